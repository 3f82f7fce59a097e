"""Where carriers open a call's media socket: `HOST_NAME`'s host, `wss://` for an https one
(`ws://` for a plain http one, as a local try-out has)."""

from urllib.parse import urlencode

from voxbus.common.settings import Settings


def socket_url(settings: Settings, path: str, query: dict[str, str]) -> str:
    base = settings.host_name
    scheme = "wss" if base.startswith("https://") else "ws"
    url = f"{scheme}://{base.partition('://')[2]}{path}"
    return f"{url}?{urlencode(query)}" if query else url
