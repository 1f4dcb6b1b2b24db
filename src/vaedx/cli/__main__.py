"""`python -m vaedx.cli` (what torchrun launches): the same entry point as the `vaedx` command."""

import sys

from vaedx.cli import main

sys.exit(main())
