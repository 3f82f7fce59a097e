"""voxbus echo service."""
