"""`python -m voxbus.cli` is the `voxbus` command."""

import sys

from voxbus.cli.main import main

sys.exit(main())
