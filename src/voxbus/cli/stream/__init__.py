"""`voxbus stream FILE`: any audio file to a recording session, with progress (see `command`)."""
