"""A webhook's form body (`application/x-www-form-urlencoded` or `multipart/form-data`), read so
that one that is no form is the caller's 400, never the server's 500."""

from collections.abc import Mapping

from aiohttp import web


class FormError(ValueError):
    """The body is not a form that can be read; the message says how."""


async def form_fields(request: web.Request) -> Mapping[str, str | bytes | bytearray | web.FileField]:
    try:
        return await request.post()
    except (ValueError, LookupError, RuntimeError) as exc:
        # aiohttp's readers: a multipart without its boundary (ValueError), a charset Python does
        # not know (LookupError), a part's unknown transfer or content encoding (RuntimeError)
        raise FormError(f"the body is not a form ({exc})") from None
