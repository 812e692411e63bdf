"""Keep NumPy's BLAS threads out of the way of the core's OpenMP threads.

After each multi-threaded call, OpenBLAS's worker threads spin for a while (up to ~0.1 s)
waiting for the next one. An OpenMP region of the C++ core that starts in that window finds
its cores taken and waits for its slowest thread. Code that interleaves small NumPy products
with core calls (a deletion request, ``mlu.unlearn``) runs under :func:`serial_blas`
(docs/design.md, "Threads"). The controller that finds the loaded BLAS libraries is built when
this module is imported: its few milliseconds would otherwise land on the first unlearning of a
process, which on the paper's small models is a large share of that call.
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


_controller()  # at import, not in the first unlearning's time (see the module docstring)


@contextlib.contextmanager
def serial_blas() -> Iterator[None]:
    """Within the block, NumPy's BLAS runs on the calling thread only (restored after)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
