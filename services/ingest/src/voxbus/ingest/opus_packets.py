"""Raw Opus packets checked as libopus reads them, before they are accepted.

A wearable's packet that libopus refuses would end its session in the transcoder (undecodable
audio); checked here, it is refused alone, with a reason, and the stream goes on. The check is
libopus's own `opus_packet_parse`, the first step of `opus_decode`: no audio is decoded, and a
packet it passes decodes (at most 120 ms, which the transcoder's buffer holds).
"""

import ctypes

import opuslib.api

_MAX_FRAMES = 48  # a packet holds at most 48 frames (RFC 6716, 3.2.5)
_parse = opuslib.api.libopus.opus_packet_parse
_parse.argtypes = (
    ctypes.c_char_p,
    ctypes.c_int32,
    ctypes.POINTER(ctypes.c_ubyte),
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_int16),
    ctypes.POINTER(ctypes.c_int),
)
_parse.restype = ctypes.c_int


class OpusPacketCheck:
    """One per connection: the output arguments are made once."""

    def __init__(self) -> None:
        self._toc = ctypes.c_ubyte()
        self._frames = (ctypes.c_void_p * _MAX_FRAMES)()
        self._sizes = (ctypes.c_int16 * _MAX_FRAMES)()

    def problem(self, packet: bytes) -> str | None:
        """Why libopus would refuse `packet`, or None when it reads it."""
        frames = _parse(packet, len(packet), ctypes.byref(self._toc), self._frames, self._sizes, None)
        if frames < 0:
            return str(opuslib.api.libopus.opus_strerror(frames).decode())
        return None
