"""numpy's functions on DeviceArrays (``__array_function__``), a module per family (issue 18).

===============  ===================================================================
``registry``     the table numpy function -> implementation, the unsupported error
``common``       devices, operands, outputs, ghosts (shape oracle), kernels, caching
``creation``     ``empty_like`` ... ``full_like``; ``arange``, ``linspace``, ``eye``
``shaping``      views: ``ravel``, ``squeeze``, ``expand_dims``, ``moveaxis``, ``broadcast_to``, ``flip``, ``split``
``joining``      copies: ``concatenate``, ``stack``, ``vstack``, ``hstack``, ``roll``, ``tile``, ``repeat``
``sized``        results sized by the data: ``nonzero``, ``unique``, ``histogram``, ...
``indexing``     integer-array and mask indexing (``a[idx]``, ``a[idx] = v``), ``fill``, ``item``
``linalg``       ``dot``, ``vdot``, ``inner``, ``outer``, ``tensordot``, ``einsum``, ``linalg.norm``, ``trace``
``sorting``      ``sort``, ``argsort``, ``partition``, ``argpartition``, ``cumsum``, ``cumprod``, ``diff``
``selection``    ``where``, ``clip``, ``take``, ``take_along_axis``, ``put``, ``compress``
``statistics``   ``average``, ``median``, ``percentile``, ``quantile`` (and the ``nan*`` forms)
===============  ===================================================================

Importing the package registers every family (``array`` imports it last).
"""

from . import creation as creation
from . import indexing as indexing
from . import joining as joining
from . import linalg as linalg
from . import registry as registry
from . import selection as selection
from . import shaping as shaping
from . import sized as sized
from . import sorting as sorting
from . import statistics as statistics
