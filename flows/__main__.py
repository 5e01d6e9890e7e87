"""`python -m flows ...` is the `lensflow` command."""

import sys

from flows.cli import main

sys.exit(main())
