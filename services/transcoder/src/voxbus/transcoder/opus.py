"""libopus decoding into one preallocated buffer per decoder.

opuslib's `Decoder.decode` allocates and casts a fresh ctypes buffer on every packet, which
costs more than decoding a 20 ms packet itself; this keeps opuslib's decoder state and calls
`opus_decode` directly with a buffer made once.
"""

import ctypes

import numpy as np
import numpy.typing as npt
import opuslib
import opuslib.api
import opuslib.api.decoder


class OpusDecodeError(ValueError):
    """libopus refused a packet; the message is libopus's."""


class LibopusDecoder:
    def __init__(self, rate: int, channels: int, max_frame: int) -> None:
        try:
            self._state = opuslib.Decoder(rate, channels)
        except opuslib.OpusError as exc:
            raise OpusDecodeError(str(exc)) from exc
        self._channels = channels
        self._max_frame = max_frame
        self._buffer = (ctypes.c_int16 * (max_frame * channels))()
        self._pointer = ctypes.cast(self._buffer, opuslib.api.c_int16_pointer)

    def decode(self, packet: bytes) -> npt.NDArray[np.int16]:
        """(frames, channels) int16 of one packet."""
        frames: int = opuslib.api.decoder.libopus_decode(
            self._state.decoder_state, packet, len(packet), self._pointer, self._max_frame, 0
        )
        if frames < 0:
            raise OpusDecodeError(opuslib.api.libopus.opus_strerror(frames).decode())
        decoded = np.frombuffer(memoryview(self._buffer), dtype=np.int16, count=frames * self._channels)
        samples: npt.NDArray[np.int16] = decoded.reshape(-1, self._channels).copy()
        return samples
