"""Incremental (push-based) container parsers: Ogg, WebM/Matroska and native FLAC byte streams, fed in
chunks of any size, give codec packets (and the stream's description) for the transcoder's decoders."""

from .errors import ContainerError
from .flac import FlacStream
from .info import StreamInfo
from .matroska_block import Block, parse_block
from .ogg import OggDemuxer
from .webm import WebmDemuxer

__all__ = [
    "Block",
    "ContainerError",
    "FlacStream",
    "OggDemuxer",
    "StreamInfo",
    "WebmDemuxer",
    "parse_block",
]
