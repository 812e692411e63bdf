"""Keep NumPy's BLAS threads out of the way of the core's OpenMP threads.

After each multi-threaded call, OpenBLAS's worker threads spin for a while (up to ~0.1 s)
waiting for the next one. An OpenMP region of the C++ core that starts in that window finds
its cores taken and waits for its slowest thread. Measured on 2 cores: a deletion request on
the paper's model (Fashion-MNIST 0 vs 1, 784-50-2, Woodbury) took 0.10-0.14 s with BLAS
threaded and 0.026-0.045 s with it on one thread; the default ``mlu.unlearn`` on a Fashion-MNIST
pair 1.6-1.9 s and 0.9-1.2 s (the same result to the bit). Code that interleaves small NumPy
products with core calls runs under :func:`serial_blas` (docs/design.md, "Threads").
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

__all__ = ["serial_blas"]


@functools.lru_cache(maxsize=1)
def _controller():
    """One threadpoolctl controller: finding the loaded libraries costs a few milliseconds."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def serial_blas() -> Iterator[None]:
    """Within the block, NumPy's BLAS runs on the calling thread only (restored after)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
