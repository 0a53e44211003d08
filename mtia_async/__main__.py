"""``python -m mtia_async``: the command line (see ``mtia_async._cli.main``)."""

from __future__ import annotations

import os
import sys

from ._cli.main import main


def _run() -> int:
    """``main()``, ending quietly when stdout's reader goes away (``... info | head``)."""
    try:
        status = main()
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
    except BrokenPipeError:
        # As Python's documentation advises: point stdout at devnull so the interpreter's
        # final flush does not raise again, and exit with 1 (EPIPE), without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(_run())
