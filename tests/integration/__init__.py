"""voxbus tests."""
