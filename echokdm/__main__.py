"""``python -m echokdm`` runs the command line."""

import sys

from echokdm.cli import main

sys.exit(main())
