"""JSON from users (imported configs, safetensors headers), read with its size and depth bounded first.

``json.loads`` recurses once per nesting level, so 49,000 nested brackets raise RecursionError, and a
5,000-digit number raises Python's own int-conversion limit: both are checked here before or while
parsing, and reported as a FlowvizError in plain words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .errors import FlowvizError

__all__ = ["load_json", "json_depth", "MAX_DEPTH", "MAX_NUMBER_CHARS"]

MAX_DEPTH = 16  # flowviz's own files nest at most 3 levels (metrics.json: {"config": {...}})
MAX_NUMBER_CHARS = 40  # enough for any float repr; far below int()'s 4,300-digit limit


def json_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text (brackets inside strings not counted); linear, no recursion."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _number(kind: type[int] | type[float], what: str) -> Callable[[str], int | float]:
    def parse(s: str) -> int | float:
        if len(s) > MAX_NUMBER_CHARS:
            raise FlowvizError(
                f"{what} holds a number written with {len(s)} characters; at most {MAX_NUMBER_CHARS} are allowed"
            )
        return kind(s)

    return parse


def load_json(text: str | bytes, *, what: str, max_depth: int = MAX_DEPTH, max_chars: int = 1_000_000) -> Any:
    """Parse JSON a user gave. Raises FlowvizError naming ``what`` (e.g. "the config") if it is too large, too
    deep, holds an absurdly long number, or is not JSON."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise FlowvizError(f"{what} is not UTF-8 text") from None
    if len(text) > max_chars:
        raise FlowvizError(f"{what} is too large ({len(text)} characters; at most {max_chars})")
    depth = json_depth(text)
    if depth > max_depth:
        raise FlowvizError(f"{what} is nested {depth} levels deep; at most {max_depth} are allowed")
    try:
        return json.loads(text, parse_int=_number(int, what), parse_float=_number(float, what))
    except json.JSONDecodeError as e:
        raise FlowvizError(f"{what} is not valid JSON: {e.msg} (line {e.lineno})") from None
