"""C code generation: a self-contained C99 project for any model and plan (host and Cortex-M)."""

from tinypatch.codegen.emitters import supported_ops
from tinypatch.codegen.project import Project, generate, render
from tinypatch.codegen.targets import ALL_TARGETS, MCU_TARGETS, TARGETS

__all__ = ["ALL_TARGETS", "MCU_TARGETS", "TARGETS", "Project", "generate", "render", "supported_ops"]
