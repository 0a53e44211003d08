"""The command line, ``python -m mtia_async``: ``main`` parses it; ``demo`` is the demo.

Like ``bench``, it uses the public API only.
"""
