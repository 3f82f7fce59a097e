"""Raw Opus packets, as a wearable sends them (`/ws`, `?format=opus`): any bytes. Ingest checks
each with libopus's own packet parser before it takes it; what the check passes, the transcoder
decodes, to at most 120 ms of audio; what it refuses has a reason. A stream of packets is
recorded within the compressed-audio bound, or refused with a DecodeError that says why."""

import hypothesis.strategies as st
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.streams import Stream, opus_packets_of, record
from voxbus.ingest.opus_packets import OpusPacketCheck
from voxbus.transcoder.decoders import OpusPacketDecoder

_PACKETS = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.builds(
        lambda toc, count, rest: bytes([toc, count]) + rest,
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=40),
    ),
    st.sampled_from(opus_packets_of(1)),
)


@examples(300)
@given(packet=_PACKETS, rate=st.sampled_from((8000, 16000, 48000)), channels=st.sampled_from((1, 2)))
def test_a_packet_ingest_takes_decodes_to_at_most_120_ms(packet: bytes, rate: int, channels: int) -> None:
    problem = OpusPacketCheck().problem(packet)
    if problem is not None:
        assert problem.strip()
        return
    blocks = OpusPacketDecoder(rate, channels).decode(packet)
    assert sum(len(block.samples) for block in blocks) <= rate * 0.12


@examples(100)
@given(packets=st.lists(_PACKETS, min_size=1, max_size=30))
def test_a_stream_of_any_packets_is_recorded_within_its_bound(packets: list[bytes]) -> None:
    source = Stream(name="opus", codec="opus", rate=16000, channels=1, data=b"".join(packets))
    outcome = record(source, packets)
    if outcome.error is not None:
        assert outcome.error.strip()
