"""Handing freed memory back to the system.

glibc's allocator keeps blocks a program freed (in each thread's arena, and on the heap below the
last block in use) for the next allocation, so a run's resident memory stays at its highest point
long after the arrays are gone, and adds to the next stage's. A stage that has just freed a lot,
or is about to allocate a lot, trims first.
"""

from __future__ import annotations


def release_freed_memory() -> None:
    """Return the allocator's freed blocks (every arena's) to the system; nothing elsewhere than glibc."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
