"""``python -m qgfast`` runs the command line."""

import sys

from qgfast.cli import main

sys.exit(main())
