"""The one gate between model-supplied text and generated sources or build files.

Model names, descriptions, tensor names, file names and chain names come from strangers:
nothing of them reaches C sources or headers except through these functions, and none of
them reaches the Makefile or the linker scripts at all (their text is ours alone). Each
keeps a short whitelist of characters and replaces every other one, so no comment
terminator (``*/``), line continuation (``\\`` or the trigraph ``??/``), newline or
preprocessor directive (``#``) can get through.
"""

from __future__ import annotations

import re

_IDENT = re.compile(r"[^0-9A-Za-z_]")
_TEXT = re.compile(r"[^0-9A-Za-z_ .,:+=-]")  # safe in a C comment
IDENT_MAX = 48  # characters kept from a name in a C identifier
TEXT_MAX = 80  # characters kept from a name in a comment


def c_ident(text: str, limit: int = IDENT_MAX) -> str:
    """A C identifier made from any text: ``[A-Za-z0-9_]`` only, not starting with a digit."""
    s = _IDENT.sub("_", str(text)[:limit])
    return s if s and not s[0].isdigit() else f"_{s}"


def c_comment(text: str, limit: int = TEXT_MAX) -> str:
    """Text safe inside a ``/* ... */`` comment (no ``*/``, ``/*``, ``\\``, ``?``, newline)."""
    return _TEXT.sub("_", str(text)[:limit]) or "_"
