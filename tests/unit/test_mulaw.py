"""μ-law prompts: the encoder against the G.711 table the transcoder decodes with."""

import numpy as np

from voxbus.telephony.mulaw import mulaw_encode
from voxbus.transcoder.samples import MULAW


def test_every_code_decoded_by_the_table_encodes_back_to_itself() -> None:
    codes = np.arange(256, dtype=np.uint8)
    encoded = np.frombuffer(mulaw_encode(MULAW[codes]), dtype=np.uint8)
    # 0x7F and 0xFF both decode to 0 (positive and negative zero): 0 encodes as 0xFF
    assert [int(code) for code in codes if encoded[code] != code] == [0x7F]


def test_pcm_survives_encoding_within_a_quantization_step() -> None:
    pcm = np.linspace(-32768, 32767, 20_001).astype(np.int16)
    decoded = MULAW[np.frombuffer(mulaw_encode(pcm), dtype=np.uint8)].astype(np.int32)
    error = np.abs(decoded - np.clip(pcm.astype(np.int32), -32635, 32635))
    step = np.maximum(8, np.abs(pcm.astype(np.int32)) // 16)  # a segment's step: 1/16 of its size
    assert np.all(error <= step)
