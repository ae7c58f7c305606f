"""`python -m kenornir` entry point."""

import sys

from kenornir.cli import main

sys.exit(main())
