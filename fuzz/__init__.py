"""Coverage-guided fuzz targets (atheris, libFuzzer): one module per parser; see README.md."""
