"""Fuzz target: a session in `?format=ogg` (48 kHz stereo): voxbus's Ogg demuxer, then libopus or
FFmpeg's Vorbis decoder.

Run: `uv run --frozen python -m fuzz.ogg <new-inputs-dir> fuzz/corpus/ogg` (fuzz/README.md).
"""

from fuzz.decoding import target
from fuzz.harness import main

test_one_input = target("ogg", rate=48000, channels=2)

if __name__ == "__main__":
    main(test_one_input)
