"""C99 literals and constant arrays."""

from __future__ import annotations

import numpy as np

_CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float",
           "float64": "double"}


def ctype(dtype: str | np.dtype) -> str:
    """The C type of a numpy/IR dtype name."""
    return _CTYPES[str(np.dtype(dtype))]


def double_lit(x: float) -> str:
    """An exact C double literal (hexadecimal float)."""
    return float(x).hex()


def float_lit(x: float) -> str:
    """An exact C float literal (hexadecimal float with the f suffix)."""
    return float(np.float32(x)).hex() + "f"


def _items(values: np.ndarray, kind: str) -> list[str]:
    flat = np.asarray(values).ravel()
    if kind == "double":
        return [double_lit(v) for v in flat.astype(np.float64)]
    if kind == "float":
        return [float_lit(v) for v in flat.astype(np.float32)]
    return [str(int(v)) for v in flat.astype(np.int64)]


_OCTAL = [f"\\{v:03o}" for v in range(256)]


def _byte_string(data: bytes, per_line: int = 64) -> str:
    """A string-literal initializer of raw bytes: compilers parse it far faster than a list
    (a character array may be initialized by a string literal of its exact length)."""
    lines = ['"' + "".join(_OCTAL[b] for b in data[i: i + per_line]) + '"' for i in range(0, len(data), per_line)]
    return "\n    ".join(lines) or '""'


def array(c_type: str, name: str, values: np.ndarray, static: bool = True, align: int = 4, per_line: int = 32) -> str:
    """``static const <c_type> name[n] = {...};`` with every value exact."""
    prefix = "static " if static else ""
    if c_type in ("int8_t", "uint8_t") and np.asarray(values).size:
        vals = np.asarray(values).ravel()
        if vals.min() < (-128 if c_type == "int8_t" else 0) or vals.max() > (127 if c_type == "int8_t" else 255):
            raise ValueError(f"{name}: values do not fit {c_type}")
        data = vals.astype(np.int8 if c_type == "int8_t" else np.uint8).tobytes()
        return f"{prefix}const {c_type} {name}[{len(data)}] TP_ALIGN({align}) =\n    {_byte_string(data)};\n"
    kind = {"double": "double", "float": "float"}.get(c_type, "int")
    items = _items(values, kind)
    if kind == "int":
        info = np.iinfo(np.dtype(c_type.replace("_t", "")))
        vals = np.asarray(values).ravel()
        if vals.size and (vals.min() < info.min or vals.max() > info.max):
            raise ValueError(f"{name}: values do not fit {c_type}")
    lines = [", ".join(items[i: i + per_line]) for i in range(0, len(items), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"{prefix}const {c_type} {name}[{max(len(items), 1)}] TP_ALIGN({align}) = {{\n    {body}\n}};\n"


def table2d(c_type: str, name: str, rows: list[list[int]]) -> str:
    """``static const <c_type> name[r][c] = {{...}, ...};``"""
    width = max(len(r) for r in rows)
    body = ",\n    ".join("{" + ", ".join(str(int(v)) for v in r) + "}" for r in rows)
    return f"static const {c_type} {name}[{len(rows)}][{width}] = {{\n    {body}\n}};\n"


def struct_array(c_type: str, name: str, rows: list[tuple[int, ...]]) -> str:
    """``static const <c_type> name[n] = {{...}, ...};`` (positional members)."""
    body = ",\n    ".join("{" + ", ".join(str(int(v)) for v in r) + "}" for r in rows)
    return f"static const {c_type} {name}[{len(rows)}] = {{\n    {body}\n}};\n"
