"""Client JSON text, read strictly: what `json.loads` would turn into an error or a value the
server cannot send back as JSON is invalid input."""

import json
import math
from typing import Any


class InvalidJson(ValueError):
    """Not RFC 8259 JSON, or nested deeper than the parser goes."""


def _no_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999: a JSON number, but no double holds it
        raise InvalidJson(f"{literal[:40]} is out of range")
    return value


def parse_json(text: str) -> Any:
    """The value `text` holds; `InvalidJson` for malformed text, NaN/Infinity (which `json.loads`
    accepts but JSON has not), numbers too large for a double, and nesting deep enough to exhaust
    the parser's recursion."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(str(exc)) from None
