"""Who sent a request, behind load balancers: the peer's address, or, when the peer is one of
`TRUSTED_PROXIES`, the address its `X-Forwarded-For` names (read from the right, past every
trusted proxy: the left end is whatever the client wrote, and only a proxy we trust appends)."""

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request, trusted: Sequence[Network]) -> Address | None:
    """The client's address; None when the peer's is unknown or not an address."""
    address = _parse(request.remote)
    if address is None or not _within(address, trusted):
        return address
    hops = [
        hop.strip() for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")
    ]
    for hop in reversed(hops):
        forwarded = _parse(hop)
        if forwarded is None:
            return None  # a hop that is no address: nothing left of it can be trusted
        if not _within(forwarded, trusted):
            return forwarded
        address = forwarded
    return address


def allowed(address: Address | None, networks: Sequence[Network]) -> bool:
    return address is not None and _within(address, networks)


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def _parse(text: str | None) -> Address | None:
    try:
        return ipaddress.ip_address(text or "")
    except ValueError:
        return None
