"""``python -m echokdm.cli`` runs the command line, as ``python -m echokdm`` and ``echokdm`` do."""

import sys

from echokdm.cli import main

sys.exit(main())
