"""WebSocket protocol adapters, one file each, and the paths they serve.

Telephony (Vonage, Exotel, Twilio) and Wyoming add their adapters here with their issues.
"""

from voxbus.ingest.protocols.base import Adapter
from voxbus.ingest.protocols.delayed_echo import DelayedEchoAdapter
from voxbus.ingest.protocols.echo import EchoAdapter
from voxbus.ingest.protocols.session import SessionAdapter

ROUTES: dict[str, type[Adapter]] = {
    "/ws/audio": EchoAdapter,
    "/api/ws/audio": SessionAdapter,
    "/api/ws/audio/{session_id}": SessionAdapter,
    "/ws/echo": DelayedEchoAdapter,
}

__all__ = ["ROUTES", "Adapter"]
