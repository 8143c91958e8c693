"""What a JSON request body may look like before any route sees it: bounded depth, finite numbers.

JSON nested a few hundred levels deep parses in Python but breaks the parsers and encoders behind
it (pydantic's JSON reader stops at 200 levels, BSON at 100), `NaN`/`Infinity` are not JSON at
all (RFC 8259), though Python's parser accepts them, and a NUL character in a string is text no
PostgreSQL-backed store can keep. All three are refused at the edge, naming the field, so nothing
downstream ever has to store or replay such a value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Fault:
    """Where a body breaks the rules, as a dotted field path, and why."""

    field: str
    message: str
    type: str


class _Constant:
    """Stands in for a `NaN`/`Infinity` literal while the body is walked."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def is_json(content_type: str | None) -> bool:
    """Whether a route parses the body as JSON (FastAPI also does when no type is given)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def find_fault(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Fault | None:
    """The first place where `body` nests deeper than `max_depth` or holds a non-finite number.

    Unparseable bodies are left to the route's own parser (None). Bodies that cannot nest that
    deep and name no constant are not parsed here at all, so the common case costs two scans.
    """
    opens = body.count(b"{") + body.count(b"[")
    constants = b"NaN" in body or b"Infinity" in body
    if opens <= max_depth and not constants and b"\\u0000" not in body:
        return None
    try:
        value = json.loads(body, parse_constant=_Constant)
    except RecursionError:
        return Fault("body", f"JSON nested deeper than {max_depth} levels", "json_too_deep")
    except ValueError:
        return None
    return _walk(value, max_depth)


def _walk(value: Any, max_depth: int) -> Fault | None:
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Constant):
            return Fault(
                _dotted(path),
                f"{node.text} is not a JSON number; send a finite number or null",
                "json_not_finite",
            )
        if isinstance(node, str) and "\x00" in node:
            return Fault(_dotted(path), "text may not hold NUL characters", "string_nul")
        if isinstance(node, dict) and any("\x00" in key for key in node):
            return Fault(_dotted(path), "field names may not hold NUL characters", "string_nul")
        if isinstance(node, (dict, list)):
            if len(path) >= max_depth:
                return Fault(
                    _dotted(path), f"JSON nested deeper than {max_depth} levels", "json_too_deep"
                )
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((child, (*path, str(key))) for key, child in reversed(list(items)))
    return None


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "body"
