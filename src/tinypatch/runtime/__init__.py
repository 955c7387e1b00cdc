"""Execution of graphs with the numpy reference kernels (whole image here; plans elsewhere)."""

from tinypatch.runtime.executor import Executor, executor_for, run

__all__ = ["Executor", "executor_for", "run"]
