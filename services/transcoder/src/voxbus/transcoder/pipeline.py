"""One session's conversion: decoder → channel mix → soxr streaming resampler → PCM s16le bytes.

Downmixing happens before resampling and upmixing after, so the resampler works on as few
channels as possible. Audio already in the target format passes through untouched.
"""

import numpy as np
import soxr

from voxbus.transcoder.decoders import Block, Decoder, make_decoder
from voxbus.transcoder.samples import Samples, mix_channels, to_int16


class SessionPipeline:
    """Feed a session's chunks in order with `push`; `finish` at the end returns the tail."""

    def __init__(self, decoder: Decoder, *, rate: int, channels: int) -> None:
        self.decoder = decoder
        self._rate, self._channels = rate, channels
        self._resampler: soxr.ResampleStream | None = None
        self._resampler_key: tuple[int, int, str] | None = None

    @classmethod
    def for_codec(cls, codec: str, *, rate: int, channels: int) -> "SessionPipeline":
        return cls(make_decoder(codec, rate, channels), rate=rate, channels=channels)

    @property
    def stateless_here(self) -> bool:
        """True when a fresh pipeline could take over at this point and produce the same output:
        no partial frame is held and no resampler carries history (PCM-like codecs only)."""
        boundary = getattr(self.decoder, "at_frame_boundary", False)
        return bool(boundary) and self._resampler is None

    def push(self, data: bytes) -> bytes:
        passthrough = getattr(self.decoder, "passthrough", None)
        if passthrough is not None and self._resampler is None:
            pcm: bytes | None = passthrough(data, self._rate, self._channels)
            if pcm is not None:
                return pcm  # already s16le at the target rate and channels: bytes untouched
        return self._convert(self.decoder.decode(data))

    def finish(self) -> bytes:
        tail = self._convert(self.decoder.flush())
        if self._resampler is None or self._resampler_key is None:
            return tail
        _, channels, dtype = self._resampler_key
        rest = self._resampler.resample_chunk(np.zeros((0, channels), dtype=dtype), last=True)
        self._resampler = None
        return tail + self._finish_block(rest)

    def _convert(self, blocks: list[Block]) -> bytes:
        return b"".join(self._convert_block(block) for block in blocks)

    def _convert_block(self, block: Block) -> bytes:
        samples = block.samples
        if samples.shape[1] > self._channels:
            samples = mix_channels(samples, self._channels)
        if block.rate != self._rate:
            samples = self._resample(samples, block.rate)
        return self._finish_block(samples)

    def _finish_block(self, samples: Samples) -> bytes:
        pcm = to_int16(samples)
        if pcm.shape[1] < self._channels:
            pcm = mix_channels(pcm, self._channels)
        return pcm.tobytes()

    def _resample(self, samples: Samples, rate: int) -> Samples:
        # Always in float32: soxr's integer output is dithered with a per-instance random seed,
        # which would make a replay differ from the first run. Rounding to int16 is ours.
        if samples.dtype.kind != "f":
            scale = 32768.0 if samples.dtype == np.int16 else 2147483648.0
            samples = (samples / scale).astype(np.float32)
        key = (rate, samples.shape[1], "float32")
        if self._resampler is None or key != self._resampler_key:
            # a format change mid-stream is rare (a new mp3 frame rate): start a new filter
            self._resampler = soxr.ResampleStream(rate, self._rate, samples.shape[1], dtype="float32")
            self._resampler_key = key
        resampled: Samples = self._resampler.resample_chunk(samples, last=False)
        return resampled
