"""Fuzz target: a session in `?format=aac` (16 kHz mono): ADTS through FFmpeg's parser and decoder,
behind voxbus's decoder and its output budget.

Run: `uv run --frozen python -m fuzz.aac <new-inputs-dir> fuzz/corpus/aac` (fuzz/README.md).
"""

from fuzz.decoding import target
from fuzz.harness import main

test_one_input = target("aac", rate=16000, channels=1)

if __name__ == "__main__":
    main(test_one_input)
