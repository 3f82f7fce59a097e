"""Client JSON text, read strictly: what `json.loads` would turn into an error or a value the
server cannot send back as JSON is invalid input."""

import json
import math
from typing import Any

from voxbus.common.json_depth import MAX_DEPTH, within_depth


class InvalidJson(ValueError):
    """Not RFC 8259 JSON, or nested deeper than voxbus reads."""


def _no_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999: a JSON number, but no double holds it
        raise InvalidJson(f"{literal[:40]} is out of range")
    return value


def parse_json(text: str) -> Any:
    """The value `text` holds; `InvalidJson` for malformed text, NaN/Infinity (which `json.loads`
    accepts but JSON has not), numbers too large for a double, and nesting deeper than
    `MAX_DEPTH` (the parser's own recursion gives up later than a reply quoting it would)."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(str(exc)) from None
    if not within_depth(value):
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} arrays and objects")
    return value
