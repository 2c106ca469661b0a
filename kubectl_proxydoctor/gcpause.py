"""Pausing the cyclic garbage collector while big acyclic structures are built."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: parsing and analysing a big node allocates millions of acyclic objects,
    and repeated full collections over them would cost more than the work itself (30-50%)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
