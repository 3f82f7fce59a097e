"""`python -m voxbus.cli` is the `voxbus` command."""

import sys

from voxbus.cli.main import main

if __name__ == "__main__":  # importing this module (the import test does) runs nothing
    sys.exit(main())
