"""One rule for every name a client gives a thing (a space, a user, a connector, a training…):
at most `MAX_NAME` characters, not blank, and no control characters.

Control characters are C0 (NUL, BEL, ESC, newlines…), DEL and C1, the Unicode line and
paragraph separators, and the bidirectional formatting controls: names end up in terminals, log
lines, file names and other people's screens, where such characters truncate, rewrite or
disguise what is shown. Every API input model uses `Name` (or `NameOrEmpty` where an empty name
means "make one up"); names with a stricter format of their own (an endpoint's DNS label, a
registry model's file name) refuse these characters already.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_NAME = 200
CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{CONTROL}]")
PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"
"""The rule as a JSON Schema pattern, for the OpenAPI document (the validator enforces it)."""


def no_control(value: str) -> str:
    """`value`, if it holds no control character; the error names the first one found."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(
            f"control character U+{ord(found.group()):04X} at position {found.start()}: "
            "only printable text is accepted"
        )
    return value


def _not_blank(value: str) -> str:
    if value and not value.strip():
        raise ValueError("a name cannot be only whitespace")
    return no_control(value)


NameOrEmpty = Annotated[
    str,
    Field(max_length=MAX_NAME, json_schema_extra={"pattern": PATTERN}),
    AfterValidator(_not_blank),
]
"""A name that may be left empty (the platform then makes one up)."""

Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME, json_schema_extra={"pattern": PATTERN}),
    AfterValidator(_not_blank),
]
"""A name a client must give."""
