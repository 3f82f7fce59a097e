"""voxbus ingest service."""
