"""Fuzz target: a session in `?format=webm` (48 kHz stereo): voxbus's EBML demuxer (WebM, Matroska),
then libopus or FFmpeg's Vorbis decoder.

Run: `uv run --frozen python -m fuzz.webm <new-inputs-dir> fuzz/corpus/webm` (fuzz/README.md).
"""

from fuzz.decoding import target
from fuzz.harness import main

test_one_input = target("webm", rate=48000, channels=2)

if __name__ == "__main__":
    main(test_one_input)
