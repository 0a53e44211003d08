"""The runtime core: marks and waits, streams, devices, the runtime, the current stream.

Imports the leaves and ``_memory`` (each device owns a caching allocator); everything
above (arrays, random numbers, the facades, the features) builds on what is exported
here. Modules, from the bottom up:

==============  ====================================================================
``mark``        the completion primitive: ``Mark``, ``Failure``, ``WaitOn``, ``Clear``,
                ``fire`` (how a worker wakes waiters), ``block_on``
``wait``        waiting on marks from asyncio, trio or a blocked thread; raising failures
``stream``      ``StreamImpl``: a stream's FIFO, drain token and failure state
``device``      ``DeviceImpl``: worker threads, ready queue, the drain loop, crashes
``runtime``     the process-wide runtime: lazy init, configuration, fork, exit
``context``     the current device and stream per task and thread (``stream_of``)
==============  ====================================================================
"""
