"""numpy's BLAS thread pool, pinned while our kernels run.

The int8 kernels' matrix products are small (one layer, one image); a threaded OpenBLAS spends
more time waking and synchronising threads than computing, and on a busy 2-core machine it made
whole-image inference several times slower (issue 13). ``threadpoolctl`` does the pinning; without
it installed the pool is left as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@functools.cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextmanager
def blas_threads(limit: int | None = 1) -> Iterator[None]:
    """Limit numpy's BLAS to ``limit`` threads inside the block (None: leave it as it is)."""
    controller = _controller() if limit is not None else None
    if controller is None:
        yield
        return
    libs = [lib for lib in controller.lib_controllers if lib.user_api == "blas"]
    old = [lib.get_num_threads() for lib in libs]  # a C call each: cheaper than a threadpool_limits
    try:
        for lib, n in zip(libs, old):
            if n != limit:
                lib.set_num_threads(limit)
        yield
    finally:
        for lib, n in zip(libs, old):
            if n != limit:
                lib.set_num_threads(n)
