"""The stream sanitizer: ``mtia_async.sanitizer`` (also ``mtia_async.sync.sanitizer``).

Finds cross-stream data races and uses of freed memory before they corrupt results, at
the launch that races, whatever the timing (torch.cuda's CSAN does this for CUDA; its
vocabulary is used here)::

    import mtia_async.sync as mtia
    mtia.sanitizer.enable()              # or MTIA_ASYNC_SANITIZE=1 in the environment
    x = mtia.zeros(1024)                 # written on the default stream
    s = mtia.Stream()
    with mtia.stream(s):
        y = x + 1                        # UnsynchronizedAccessError: read-after-write,
                                         # s never waited for the default stream

Off by default, and free when off. ``enable(mode="warn")`` warns
(``SanitizerWarning``) instead of raising. See docs/sanitizer.md.
"""

from __future__ import annotations

from ._exceptions import SanitizerWarning as SanitizerWarning
from ._exceptions import UnsynchronizedAccessError as UnsynchronizedAccessError
from ._sanitizer import disable as disable
from ._sanitizer import enable as enable
from ._sanitizer import is_enabled as is_enabled

__all__ = ["SanitizerWarning", "UnsynchronizedAccessError", "disable", "enable", "is_enabled"]
