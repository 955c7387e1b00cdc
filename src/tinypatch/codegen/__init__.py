"""C code generation: a self-contained C99 project for any model and plan (host and Cortex-M).

The package is callable: ``tinypatch.codegen(model, out_dir, ...)`` is :func:`tinypatch.api.codegen`
(importing a submodule makes ``tinypatch.codegen`` this package, so the API function lives here too).
"""

import sys
import types

from tinypatch.codegen.emitters import supported_ops
from tinypatch.codegen.project import Project, generate, render
from tinypatch.codegen.targets import ALL_TARGETS, MCU_TARGETS, TARGETS

__all__ = ["ALL_TARGETS", "MCU_TARGETS", "TARGETS", "Project", "generate", "render", "supported_ops"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204 - the signature of api.codegen
        from tinypatch.api import codegen

        return codegen(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
