"""Fuzz target: a session in `?format=wav` (16 kHz mono): voxbus's RIFF header parser and data reader,
every sample format they take.

Run: `uv run --frozen python -m fuzz.wav <new-inputs-dir> fuzz/corpus/wav` (fuzz/README.md).
"""

from fuzz.decoding import target
from fuzz.harness import main

test_one_input = target("wav", rate=16000, channels=1)

if __name__ == "__main__":
    main(test_one_input)
