"""The voxbus command line."""
