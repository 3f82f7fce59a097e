"""voxbus telephony service."""
