"""numpy's functions on DeviceArrays (``__array_function__``), a module per family (issue 18).

===============  ===================================================================
``registry``     the table numpy function -> implementation, the unsupported error
``common``       devices, operands, outputs, ghosts (shape oracle), kernels, caching
``creation``     ``empty_like`` ... ``full_like``; ``arange``, ``linspace``, ``eye``
``selection``    ``where``, ``clip``, ``take``, ``take_along_axis``, ``put``, ``compress``
``statistics``   ``average``, ``median``, ``percentile``, ``quantile`` (and the ``nan*`` forms)
===============  ===================================================================

Importing the package registers every family (``array`` imports it last).
"""

from . import creation as creation
from . import registry as registry
from . import selection as selection
from . import statistics as statistics
