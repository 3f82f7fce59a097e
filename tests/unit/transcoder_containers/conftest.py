"""Media encoded once per session: each container and codec the parsers take, as FFmpeg writes them."""

import pytest

from .media import Sample, make_sample


@pytest.fixture(scope="session")
def ogg_opus_mono() -> Sample:
    return make_sample("ogg", "libopus", 48000, 1)


@pytest.fixture(scope="session")
def ogg_opus_stereo() -> Sample:
    return make_sample("ogg", "libopus", 48000, 2)


@pytest.fixture(scope="session")
def ogg_opus_24k() -> Sample:
    return make_sample("ogg", "libopus", 24000, 1)


@pytest.fixture(scope="session")
def ogg_vorbis() -> Sample:
    # FFmpeg's native Vorbis encoder is experimental and takes stereo only.
    return make_sample("ogg", "vorbis", 44100, 2, options={"strict": "experimental"})


@pytest.fixture(scope="session")
def webm_opus() -> Sample:
    return make_sample("webm", "libopus", 48000, 2)


@pytest.fixture(scope="session")
def webm_opus_live() -> Sample:
    """FFmpeg's live WebM: an unknown-size Segment, as a recorder that cannot seek back writes it."""
    return make_sample("webm", "libopus", 48000, 1, container_options={"live": "1"})


@pytest.fixture(scope="session")
def webm_vorbis() -> Sample:
    return make_sample("webm", "vorbis", 44100, 2, options={"strict": "experimental"})


@pytest.fixture(scope="session")
def flac_16bit() -> Sample:
    return make_sample("flac", "flac", 44100, 2)


@pytest.fixture(scope="session")
def flac_24bit() -> Sample:
    return make_sample("flac", "flac", 48000, 1, bits=24)
