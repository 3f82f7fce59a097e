"""How deep a client's or a carrier's JSON may nest.

`json.loads` takes nesting as deep as Python's recursion limit allows, and gives up only there.
A value it just managed to read cannot then be quoted back (`UnknownMessageType.received`),
encoded again (a Vonage notify's payload, for the log) or validated without running out of stack
a few frames deeper: a RecursionError the connection's driver answers with 1011. Nothing voxbus
or a carrier sends nests more than a few levels, so deeper JSON is refused where it is read.
"""

from typing import Any, Final

MAX_DEPTH: Final = 64
"""Arrays and objects inside one another that a message may hold."""


def within_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` (decoded JSON) nests at most `limit` arrays and objects deep; iterative,
    so that it cannot run out of stack itself."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True
