"""Typed exceptions. The CLI turns every one of them into a single line and a non-zero exit."""

from __future__ import annotations


class TinypatchError(Exception):
    """Base class of every error tinypatch raises on purpose."""


class UsageError(TinypatchError, ValueError):
    """A bad argument value given to the API or the CLI (a size, a fraction, a plan argument)."""


class ModelLoadError(TinypatchError):
    """A model file is missing, truncated, corrupted or not a model at all."""


class UnsupportedOperatorError(TinypatchError):
    """The model uses an operator (or an operator option) that tinypatch cannot run."""

    def __init__(self, op_type: str, index: int | None = None, detail: str = ""):
        where = f" at operator index {index}" if index is not None else ""
        extra = f": {detail}" if detail else ""
        super().__init__(f"unsupported operator {op_type}{where}{extra}")
        self.op_type = op_type
        self.index = index
        self.found: dict[str, list[int]] = {op_type: [] if index is None else [index]}

    @classmethod
    def listing(cls, found: dict[str, list[int]], hint: str = "") -> UnsupportedOperatorError:
        """One error naming every unsupported operator of a model (type -> operator indices)."""
        first = min(found, key=lambda t: found[t][0])
        if len(found) == 1 and len(found[first]) == 1:
            err = cls(first, found[first][0], hint)
        else:
            err = cls(first, found[first][0])
            parts = [f"{t} x{len(ix)} (operator {'indices' if len(ix) > 1 else 'index'} {', '.join(map(str, ix))})"
                     for t, ix in sorted(found.items(), key=lambda kv: kv[1][0])]
            n = sum(map(len, found.values()))
            err.args = (f"{n} unsupported operators: {'; '.join(parts)}{f'. {hint}' if hint else ''}",)
        err.found = found
        return err


class QuantizationError(UnsupportedOperatorError):
    """An operator's quantization parameters are ones TFLite's reference kernels refuse (no reference
    to be exact against); names the op, the tensor and the value."""

    def __init__(self, op_type: str, index: int | None, tensor: str, value: str, why: str):
        where = f" at operator index {index}" if index is not None else ""
        TinypatchError.__init__(self, f"{op_type}{where}: tensor {tensor!r} has {value}, which TFLite's reference "
                                      f"kernels refuse: {why}")
        self.op_type, self.index, self.tensor, self.value = op_type, index, tensor, value


class GraphError(TinypatchError):
    """The graph is inconsistent (bad shapes, dangling tensors, cycles)."""


class PlanError(TinypatchError):
    """A schedule cannot be built, loaded or executed for this model."""


class BudgetError(PlanError):
    """No schedule fits the requested budget; ``best`` holds the smallest achievable figure."""

    def __init__(self, message: str, best: int | float | None = None):
        super().__init__(message)
        self.best = best


class InputError(TinypatchError):
    """An input file (image, .npy) cannot be read or does not match the model input."""


class OutputError(TinypatchError):
    """An output path we refuse to write: not ours (codegen's marker is missing), in use, or not a folder."""


class ToolchainError(TinypatchError):
    """A compiler, linker or emulator step failed, or the tool is not installed."""
