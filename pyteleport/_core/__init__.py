"""The core every backend shares: capture the running frames, compile the morph
that rebuilds them, pack the payload; and the target's restore entry.

All knowledge of CPython versions lives in ``cpython.py``.
"""
