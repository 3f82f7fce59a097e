"""What every ingest socket and handler shares in one process."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from voxbus.common.bus.base import Bus
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore
from voxbus.common.tenant_keys import TenantKeys
from voxbus.ingest.acks import AckWriter
from voxbus.ingest.egress import EgressRouter
from voxbus.ingest.leases import LeaseKeeper
from voxbus.ingest.sessions import SessionRegistry

if TYPE_CHECKING:
    from voxbus.ingest.connection import SocketConnection


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestContext:
    settings: Settings
    bus: Bus
    store: StateStore
    keys: TenantKeys  # who a request is: docs/security.md
    registry: SessionRegistry
    leases: LeaseKeeper
    router: EgressRouter
    acks: AckWriter
    raw_topic: str
    events_topic: str  # call events (DTMF, a media socket's session) for the telephony service
    max_chunk_bytes: int  # the largest binary message taken: settings' and the bus topics' limits
    connections: set["SocketConnection"]  # every open socket, for shutdown to restart


INGEST = web.AppKey("ingest", IngestContext)
