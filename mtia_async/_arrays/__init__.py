"""Device arrays: ``DeviceArray``, its factories, and numpy's operations on it.

Imports ``_core`` (streams, the current stream, waits) and the leaves. Modules, from
the bottom up:

===============  ===================================================================
``checks``       argument checks: dtypes, shapes, indices, reshape targets, messages
``shapes``       output shapes: broadcasting, reductions, gufunc cores (pure tuples)
``array``        ``DeviceArray``: memory, views, attributes, guards against host copies
``transfer``     copies host<->device and device<->device, fills, ``__setitem__``
``bind``         how ``launch`` binds DeviceArray arguments (numpy views in the worker)
``dispatch``     operators and ufuncs: dtype resolution on the caller, caches, kernels
``reductions``   ``sum``/``mean``/``argmax``/... and ``__array_function__``
``factories``    ``asarray``, ``empty``, ``zeros``, ``ones``, ``full``
===============  ===================================================================

``array`` reaches ``transfer``, ``dispatch`` and ``reductions`` through one late import
at its bottom: they implement DeviceArray's methods and need the type.
"""
