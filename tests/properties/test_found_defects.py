"""One test per defect the properties or the fuzzer found, each the smallest input that showed it
(the fuzzer's own are in its corpus, fuzz/corpus/<target>/defect-*).

Each failed before its fix (an exception other than the parser's own, or a reply that could not
be sent); docs/security.md ("Bad input") lists them.
"""

import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.harness import cuts
from tests.audio import encode, tone_and_noise
from tests.properties.clients import drive, nested
from tests.properties.streams import Stream, record, vorbis_headers
from tests.unit.transcoder_containers.builders import block_payload, ebml_header, element, track_entry
from voxbus.common.carrier_events import CarrierMessageError
from voxbus.common.stream_messages import MAX_PAYLOAD_BYTES, Media, parse_stream_event
from voxbus.common.vonage_messages import Connected
from voxbus.transcoder.containers import ContainerError, WebmDemuxer
from voxbus.transcoder.containers import matroska_ids as ids
from voxbus.transcoder.containers.xiph import xiph_lace
from voxbus.transcoder.decoders import DecodeError, Mp3Decoder
from voxbus.transcoder.pipeline import SessionPipeline

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


@pytest.mark.parametrize("rate", [math.nan, math.inf, -math.inf, 1e308])
def test_a_webm_sampling_frequency_that_is_no_rate_is_refused(rate: float) -> None:
    """Was ValueError or OverflowError (from round(), or CodecDelay at 1e308 Hz): the transcoder
    logged an unexpected failure instead of refusing the stream."""
    ident, comment, setup, _ = vorbis_headers()
    private = xiph_lace([ident, comment, setup])
    entry = track_entry(1, "A_VORBIS", rate=rate, codec_private=private, codec_delay_ns=1 << 63)
    data = ebml_header() + element(ids.SEGMENT, element(ids.TRACKS, entry))
    pipeline = SessionPipeline.for_codec("webm", rate=48000, channels=2)
    with pytest.raises(DecodeError, match="invalid SamplingFrequency or Channels in the TrackEntry"):
        pipeline.push(data)


def test_a_discard_padding_wider_than_8_bytes_is_refused() -> None:
    """Was OverflowError from `discard_padding` (a number too large for a float)."""
    group = element(ids.BLOCK, block_payload(1, [b"\xfc"])) + element(ids.DISCARD_PADDING, b"\x01" * 200)
    cluster = element(ids.TIMECODE, b"\x00") + element(ids.BLOCK_GROUP, group)
    data = ebml_header() + element(
        ids.SEGMENT, element(ids.TRACKS, track_entry(1, "A_OPUS")) + element(ids.CLUSTER, cluster)
    )
    with pytest.raises(ContainerError, match="signed integer element of 200 bytes"):
        WebmDemuxer().feed(data)


def test_an_aac_stream_of_31_channels_is_refused_not_a_crash() -> None:
    """Was a segmentation fault (PyAV's to_ndarray() on a planar frame of more than 8 channels),
    which ended the transcoder and every session it held: found by the fuzzer (fuzz/aac.py).
    In a process of its own, so that a crash fails this test rather than ending the run."""
    program = (
        "import sys\n"
        "from voxbus.transcoder.decoders import DecodeError\n"
        "from voxbus.transcoder.pipeline import SessionPipeline\n"
        "pipeline = SessionPipeline.for_codec('aac', rate=16000, channels=1)\n"
        "try:\n"
        "    pipeline.push(sys.stdin.buffer.read())\n"
        "except DecodeError as exc:\n"
        "    print(exc)\n"
    )
    data = (CORPUS / "aac" / "defect-31-channels.aac").read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", program], input=data, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "the stream decodes to 31 channels; voxbus takes 1-8" in done.stdout.decode()


def test_an_mp3_frame_takes_the_rate_of_its_own_header() -> None:
    """Was the rate FFmpeg's parser had last seen while reading ahead: at a change of rate (two
    files one after the other) a 16 kHz frame was recorded as 44.1 kHz, or not, depending on
    how the stream was cut; found by the fuzzer (fuzz/mp3.py) in damaged bytes."""
    first = encode(tone_and_noise(0.3, 16000, 1), 16000, container="mp3", codec="libmp3lame", bit_rate=32_000)
    second = encode(
        tone_and_noise(0.3, 44100, 1), 44100, container="mp3", codec="libmp3lame", bit_rate=64_000
    )
    data = first + second
    decoded = []
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder = Mp3Decoder()
        blocks = [block for chunk in chunks for block in decoder.decode(chunk)] + decoder.flush()
        decoded.append([(len(block.samples), block.rate) for block in blocks])
    assert decoded[0] == decoded[1]
    # MPEG-2 frames (576 samples) are the 16 kHz file's, MPEG-1 frames (1152) the 44.1 kHz one's
    assert {(576, 16000), (1152, 44100)} == set(decoded[0])


@pytest.mark.parametrize("name", ["defect-rate-from-junk.mp3", "defect-open-after-junk.mp3"])
def test_damaged_mp3_records_the_same_audio_however_it_is_cut(name: str) -> None:
    """The second failed to open its decoder when cut as the fuzzer cut it (FFmpeg's parser had
    set the context from junk before PyAV opened it at the first packet), not when whole."""
    data = (CORPUS / "mp3" / name).read_bytes()
    source = Stream(name="mp3", codec="mp3", rate=16000, channels=1, data=data)
    assert record(source, cuts(data)) == record(source, [data])


@pytest.mark.parametrize("path", ["/api/ws/audio", "/ws/echo"])
def test_json_nested_nearly_as_deep_as_the_parser_goes_is_refused(path: str) -> None:
    """Was a RecursionError while quoting it back (`UnknownMessageType.received`): the driver
    closed the socket with 1011, the session protocol's and /ws/echo's alike. Now JSON nested
    deeper than 64 arrays and objects is not JSON voxbus reads."""
    sent = [nested(depth) for depth in (65, *range(900, 1100))]
    outcome = drive(path, sent)
    assert outcome.refused is None and outcome.connection.closed is None
    invalid = "Invalid JSON format"
    assert all(invalid in reply for reply in outcome.connection.sent[-len(sent) :])


@pytest.mark.parametrize("rate", ["²", "1" + "0" * 4300])
def test_an_exotel_sample_rate_int_cannot_read_is_refused(rate: str) -> None:
    """Was ValueError from int(): "²" is a digit to str.isdigit(), and int() reads at most 4300."""
    outcome = drive("/ws/exotel", query={"sample-rate": rate})
    assert outcome.refused is not None
    assert (outcome.refused.code, outcome.refused.reply.error) == (1008, "Invalid sample rate")


def test_a_vonage_rate_of_more_digits_than_int_reads_is_refused() -> None:
    """Was ValueError from int() in `Connected.rate()`: the call ended with 1011."""
    event = Connected.model_validate(
        {"event": "websocket:connected", "content-type": "audio/l16;rate=1" + "0" * 4300}
    )
    with pytest.raises(CarrierMessageError, match="is not audio/l16 at 8000, 16000, 24000") as refused:
        event.rate()
    assert refused.value.reason == "content_type"


def test_a_media_payload_a_byte_over_its_limit_is_refused() -> None:
    """Was taken: the limit was checked on the base64 text only, which leaves 3 bytes unsure."""
    payload = base64.b64encode(bytes(MAX_PAYLOAD_BYTES + 1)).decode()
    event = parse_stream_event(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert isinstance(event, Media)
    with pytest.raises(CarrierMessageError, match="over 102400 bytes") as refused:
        event.audio()
    assert refused.value.reason == "too_large"
