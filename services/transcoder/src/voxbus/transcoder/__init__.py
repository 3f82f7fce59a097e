"""voxbus transcoder service."""
