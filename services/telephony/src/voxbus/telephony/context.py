"""What the telephony service's handlers share in one process."""

from dataclasses import dataclass

from aiohttp import web

from voxbus.common.bus.base import Bus
from voxbus.common.call_state import CallRecords
from voxbus.common.settings import Settings
from voxbus.common.tenant_keys import TenantKeys
from voxbus.telephony.prompts import Prompts


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephonyContext:
    settings: Settings
    bus: Bus
    keys: TenantKeys
    calls: CallRecords
    prompts: Prompts
    events_topic: str


TELEPHONY = web.AppKey("telephony", TelephonyContext)
