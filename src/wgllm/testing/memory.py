"""Process memory for leak tests."""

import ctypes
import gc

import psutil


def resident_bytes() -> int:
    """Resident memory once Python garbage is collected and glibc has handed freed heap
    pages back (malloc_trim): what is left is memory still in use, not allocator slack."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return psutil.Process().memory_info().rss
