"""Keep freed host memory in the process, so tensors that are allocated and freed every step reuse it.

Why: glibc's malloc serves a large allocation with a fresh ``mmap`` and unmaps it again on ``free``, and it gives
the top of its heap back to the kernel once that exceeds a small threshold. A CPU training step allocates and
frees activation-sized tensors (8-64 MiB at batch 128) hundreds of times, so the kernel page-faults and zeroes
every one of them again, 4 KiB at a time. Measured on a 2-core Xeon (``docs/benchmarks.md``): a bf16 ReLU of a
128x128x32x32 tensor took 11.8 ms with 8,193 page faults per call under the defaults and 2.2 ms with none after
:func:`reuse_freed_memory`; a resnet50 training step got 1.3x faster. PyTorch's CPU performance guide gets the
same effect by preloading jemalloc or tcmalloc; this does it in-process, through ``mallopt``, with nothing to
install or preload.

The cost: the process keeps its peak heap for its lifetime instead of shrinking after it (freed memory is
reused, not returned). That suits a training or benchmark process, which returns to its peak every step; it is
why only the trainer calls this, and why ``train.reuse_host_memory=false`` turns it off.

No torch import: this is plain ``ctypes`` on the C library.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

_INT_MAX = 2**31 - 1


def reuse_freed_memory(top_pad_mib: int = 256) -> bool:
    """Tell glibc's malloc to keep freed memory for reuse: serve every allocation from the heap (no per-tensor
    ``mmap``), never trim the heap's top, and grow it ``top_pad_mib`` MiB at a time.

    Returns ``True`` when the settings took effect, ``False`` where there is nothing to tune (not glibc: macOS,
    Windows, musl) or the C library refused them. Safe to call more than once; it affects the whole process.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        # The process's own symbols: the glibc already loaded, found without find_library's ldconfig subprocess.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. The order matters little; all three are needed: with mmap off but the
    # default trim threshold, the heap's top is still handed back and faulted in again.
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_TOP_PAD, min(top_pad_mib << 20, _INT_MAX)))
    return all(mallopt(param, value) == 1 for param, value in settings)
