"""Tests of the transcoder's incremental container parsers (Ogg, WebM/Matroska, FLAC)."""
