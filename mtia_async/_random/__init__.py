"""Random numbers: counter-based Philox generators per device, and the kernels that draw.

Imports ``_arrays`` (outputs are DeviceArrays) and ``_core``. ``generator`` holds the
generators, seeding and state (caller side); ``kernels`` checks arguments, allocates
and reserves counter slices (caller side); ``philox`` fills the outputs (worker side).
The split follows CuPy's ``cupy/random/_generator`` and ``_kernels``.
"""
