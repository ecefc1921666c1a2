"""``python -m devicemodel`` runs the pyhv command line."""

import sys

from devicemodel.cli import main

sys.exit(main())
