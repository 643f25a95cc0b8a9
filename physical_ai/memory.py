"""Process-wide allocator settings for nodes that build large messages at sensor rate."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_large_buffers(mmap_threshold_bytes: int = 64 << 20, trim_threshold_bytes: int = 128 << 20) -> bool:
    """Keep freed multi-megabyte buffers in the heap instead of returning them to the OS.

    By default glibc serves each 2 MB point cloud or 1 MB image from a fresh mmap (or trims it off the heap top
    when freed), so every message pays page faults on first touch: about 1.5 ms per 2 MB, several times the cost
    of the conversion itself. Raising both thresholds makes the next message reuse the same pages. Memory held
    stays bounded by the largest burst of live messages.

    Returns:
        True when the settings were applied (glibc), False elsewhere (no-op).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_bytes))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_bytes)))
