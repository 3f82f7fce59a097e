"""G.711 μ-law encoding (ITU-T G.711, the segment-and-mantissa form with bias 0x84): prompts for
calls whose carrier takes μ-law (Exotel configured so, Twilio always)."""

import numpy as np
import numpy.typing as npt

_BIAS = 0x84
_CLIP = 32635


def mulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """16-bit PCM samples as μ-law bytes, one per sample."""
    values = samples.astype(np.int32)
    sign = np.where(values < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(values), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes.tobytes()
