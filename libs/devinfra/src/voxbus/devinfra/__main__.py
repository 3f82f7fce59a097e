"""`python -m voxbus.devinfra`: see voxbus.devinfra.cli."""

import sys

from voxbus.devinfra.cli import main

if __name__ == "__main__":
    sys.exit(main())
