"""Execution with the numpy reference kernels: whole image (``executor``) and any plan inside a
simulated arena (``plan_executor``, ``sim_arena``)."""

from tinypatch.runtime.executor import Executor, executor_for, run

__all__ = ["Executor", "executor_for", "run"]
