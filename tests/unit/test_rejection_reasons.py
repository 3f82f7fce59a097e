"""Every reason a socket's message can be rejected for is one its adapter declares: ingest exports
each declared series of `voxbus_ingest_rejected_messages_total` at 0 from the start, so a
dashboard's rate sees the first rejection (a series that appears at 1 has no sample to rise
from). A reason left out would be counted, but its first rejection lost to `rate()`."""

import re
from pathlib import Path

from voxbus.common import carrier_events
from voxbus.ingest.protocols import carrier, media_stream, vonage
from voxbus.ingest.protocols.media_stream import MediaStreamAdapter
from voxbus.ingest.protocols.vonage import VonageAdapter

COMMON = Path(carrier_events.__file__).parent


def literals(pattern: str, *paths: Path) -> set[str]:
    return {found for path in paths for found in re.findall(pattern, path.read_text())}


def test_every_carrier_reason_in_the_code_is_declared_by_the_adapters_that_can_reject_it() -> None:
    messages = literals(
        r'CarrierMessageError\(\s*"(\w+)"',
        *(COMMON / name for name in ("carrier_events.py", "stream_messages.py", "vonage_messages.py")),
    )
    assert messages == set(carrier_events.CARRIER_MESSAGE_REASONS)
    shared = literals(r'\.reject\(\s*"(\w+)"', Path(carrier.__file__))
    for adapter, module in ((MediaStreamAdapter, media_stream), (VonageAdapter, vonage)):
        own = literals(r'\.reject\(\s*"(\w+)"', Path(module.__file__))
        assert set(adapter.rejections) == messages | shared | own, adapter.__name__
