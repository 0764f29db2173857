"""The API's JSON parser: DRF's, refusing what it would otherwise turn into a 500.

A body nested deeper than ``MAX_JSON_DEPTH`` (``[[[[…`` 100,000 deep made ``json.loads`` recurse until
Python raised RecursionError) is refused before parsing; so is a string holding NUL (``"\\u0000"``),
which PostgreSQL cannot store in a text or JSON column. Both are 400 with a message."""

from __future__ import annotations

import io
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from core.limits import MAX_JSON_DEPTH

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count)."""
    deepest = depth = 0
    for char in _NOT_BRACKET.sub(b"", _STRING.sub(b'""', raw)):
        if char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _holds_nul(value) -> bool:
    """Whether any string (key or value) in a parsed JSON document holds NUL; no recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if nesting_depth(raw) > MAX_JSON_DEPTH:
            raise ParseError(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        if _holds_nul(data):
            raise ParseError("The JSON body holds a NUL character (\\u0000); remove it and try again.")
        return data
