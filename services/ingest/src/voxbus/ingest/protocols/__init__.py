"""WebSocket protocol adapters, one file each, and the paths they serve.

Telephony carriers' media sockets (Vonage, Exotel, Twilio) pace their outbound audio with
`voxbus.ingest.pacer`. Wyoming's adapter also serves the TCP port (`voxbus.ingest.wyoming_tcp`).
"""

from voxbus.ingest.protocols.base import Adapter
from voxbus.ingest.protocols.delayed_echo import DelayedEchoAdapter
from voxbus.ingest.protocols.echo import EchoAdapter
from voxbus.ingest.protocols.exotel import ExotelAdapter
from voxbus.ingest.protocols.session import SessionAdapter
from voxbus.ingest.protocols.twilio import TwilioAdapter
from voxbus.ingest.protocols.vonage import VonageAdapter
from voxbus.ingest.protocols.wyoming import WyomingAdapter

ROUTES: dict[str, type[Adapter]] = {
    "/ws/audio": EchoAdapter,
    "/api/ws/audio": SessionAdapter,
    "/api/ws/audio/{session_id}": SessionAdapter,
    "/ws/echo": DelayedEchoAdapter,
    "/ws": WyomingAdapter,
    "/ws/vonage": VonageAdapter,
    "/ws/exotel": ExotelAdapter,
    "/ws/twilio": TwilioAdapter,
}

__all__ = ["ROUTES", "Adapter"]
