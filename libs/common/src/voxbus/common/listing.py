"""Lists the API pages through newest first (`GET /api/audio/sessions`, `GET /api/calls`): the
`limit` and `cursor` query parameters, and the walk down a sorted-set index scored by creation
time that fills a page.

`cursor` is the creation time of the last item the previous page looked at. A request looks at
no more than `MAX_EXAMINED` items (a filter that matches few would otherwise read every item ever
made, holding up everything else the process serves): a page may then hold fewer than `limit`,
and its next cursor goes on from where it stopped. None: nothing is left.
"""

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from voxbus.common.http_bodies import MAX_PAGE, ErrorBody
from voxbus.common.store.base import ScoreRange, StateStore

MAX_EXAMINED: Final = 1000

Item = TypeVar("Item")


class PageError(ValueError):
    """A `limit` or `cursor` the API refuses (422); `body` is the error's JSON."""

    def __init__(self, body: ErrorBody) -> None:
        super().__init__(body.error)
        self.body = body


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    cursor: float | None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> "Page":
        try:
            limit = int(query.get("limit", "20"))
            cursor = float(query["cursor"]) if "cursor" in query else None
        except ValueError:
            raise PageError(ErrorBody(error="Invalid limit or cursor")) from None
        if cursor is not None and not math.isfinite(cursor):
            raise PageError(ErrorBody(error="Invalid limit or cursor"))
        if not 1 <= limit <= MAX_PAGE:
            raise PageError(ErrorBody(error="Invalid limit", valid_range=[1, MAX_PAGE]))
        return cls(limit, cursor)


async def newest_first(
    store: StateStore,
    index: str,
    page: Page,
    read: Callable[[Sequence[str]], Awaitable[Sequence[Item | None]]],
) -> tuple[list[Item], float | None]:
    """A page of the items `index` names, newest first: `read(ids)` gives each id's item, or None
    to leave it out (gone, or filtered out); and the next page's cursor."""
    bound = ScoreRange() if page.cursor is None else ScoreRange(max=page.cursor, max_exclusive=True)
    items: list[Item] = []
    examined, last_created, offset = 0, page.cursor, 0
    while len(items) < page.limit and examined < MAX_EXAMINED:
        size = min(max(page.limit, 20), MAX_EXAMINED - examined)
        found = await store.zrange(index, bound, descending=True, offset=offset, limit=size)
        if not found:
            return items, None
        offset += len(found)
        for (_, created), item in zip(found, await read([member for member, _ in found]), strict=True):
            examined, last_created = examined + 1, created
            if item is not None:
                items.append(item)
                if len(items) == page.limit:
                    break
    return items, last_created
