"""Where candidate evaluations run: a Ray cluster (local by default), in candidate order.

:class:`RayExecutor` has the ``map(fn, items)`` of :class:`concurrent.futures.Executor`, which is
all :func:`tinypatch.nas.evolution.evolve` asks of an executor; results come back in the order
of ``items`` whatever worker computed them, so a search gives the same result on any cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tinypatch.errors import UsageError

RAY_MISSING = "ray is not installed: pip install 'tinypatch[ray]' (or run without --ray / --workers / --ray-address)"


def _call(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [fn(item) for item in items]


class RayExecutor:
    """Evaluate on Ray: a local cluster of ``workers`` CPUs, or the cluster at ``address``.

    Starts Ray on first use unless it is already initialised; :meth:`close` shuts down only a
    Ray this executor started (also on ``with`` exit).
    """

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise UsageError(f"workers must be a positive integer, got {workers!r}")
        try:
            import ray
        except ImportError:
            raise UsageError(RAY_MISSING) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise UsageError(f"cannot start {where}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
            self._started = True
        self._remote = ray.remote(_call)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> list[Any]:
        """``[fn(x) for x in items]``, in chunks of about a quarter of the items per CPU (one task
        per item would cost more in Ray's per-task overhead than most evaluations take)."""
        items = list(items)
        if not items:
            return []
        cpus = max(1, int(self._ray.cluster_resources().get("CPU", 1)))
        size = -(-len(items) // (4 * cpus))
        ref = self._ray.put(fn)
        chunks = self._ray.get([self._remote.remote(ref, items[i:i + size]) for i in range(0, len(items), size)])
        return [r for chunk in chunks for r in chunk]

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
