"""Where candidate evaluations and supernet micro-batches run: a Ray cluster (local by default), in order.

:class:`RayExecutor` has the ``map(fn, items)`` of :class:`concurrent.futures.Executor`, which is
all :func:`tinypatch.nas.evolution.evolve` and :func:`tinypatch.nas.supernet.train_supernet` ask
of an executor; results come back in the order of ``items`` whatever worker computed them, so a
search or a training run gives the same result on any cluster. :func:`ray_executor` is the
``--ray`` / ``--workers`` / ``--ray-address`` choice of the commands.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tinypatch.errors import UsageError

RAY_MISSING = "ray is not installed: pip install 'tinypatch[ray]' (or run without --ray / --workers / --ray-address)"


def _check_reachable(address: str) -> None:
    """UsageError at once when ``host:port`` (or ``ray://host:port``) refuses a TCP connection
    (Ray itself retries for minutes); other forms ("auto", "local") are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


@contextmanager
def _held_stderr() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 (Ray's C++ client logs a line a second
    while it retries a connection); written out if the block succeeds, dropped if it raises."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        os.write(2, held.read())


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
            if address:
                _check_reachable(address)
            try:
                if address:
                    with _held_stderr():
                        ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"connect to the Ray cluster at {address}" if address else "start a local Ray cluster"
                raise UsageError(f"cannot {where}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
            self._started = True
        self._remote = ray.remote(_call)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> list[Any]:
        """``[fn(x) for x in items]``, in chunks of about a quarter of the items per CPU (one task
        per item would cost more in Ray's per-task overhead than most evaluations take)."""
        items = list(items)
        if not items:
            return []
        size = -(-len(items) // (4 * self.cpus))
        ref = self._ray.put(fn)
        chunks = self._ray.get([self._remote.remote(ref, items[i:i + size]) for i in range(0, len(items), size)])
        return [r for chunk in chunks for r in chunk]

    @property
    def cpus(self) -> int:
        """The cluster's CPUs (a local cluster: ``workers``)."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def ray_executor(ray: bool = False, address: str | None = None, workers: int | None = None) -> Iterator[RayExecutor | None]:
    """A :class:`RayExecutor` when ``ray``, ``address`` or ``workers`` asks for one (closed on
    exit), else None (run in process)."""
    if not (ray or address or workers is not None):
        yield None
        return
    with RayExecutor(address, workers) as executor:
        yield executor
