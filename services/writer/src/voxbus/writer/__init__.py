"""voxbus writer service."""
