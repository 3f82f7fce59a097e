"""Fuzz target: a session in `?format=flac` (16 kHz mono): voxbus's reader of FLAC's metadata, then
FFmpeg's FLAC parser and decoder.

Run: `uv run --frozen python -m fuzz.flac <new-inputs-dir> fuzz/corpus/flac` (fuzz/README.md).
"""

from fuzz.decoding import target
from fuzz.harness import main

test_one_input = target("flac", rate=16000, channels=1)

if __name__ == "__main__":
    main(test_one_input)
