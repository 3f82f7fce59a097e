"""Shared library of the voxbus services: settings, constants, bus records, backends, runtime."""

__version__ = "0.1.0"
