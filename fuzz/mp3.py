"""Fuzz target: a session in `?format=mp3` (16 kHz mono): voxbus's ID3v2 skipper, then FFmpeg's mp3
parser and decoder.

Run: `uv run --frozen python -m fuzz.mp3 <new-inputs-dir> fuzz/corpus/mp3` (fuzz/README.md).
"""

from fuzz.decoding import target
from fuzz.harness import main

test_one_input = target("mp3", rate=16000, channels=1)

if __name__ == "__main__":
    main(test_one_input)
