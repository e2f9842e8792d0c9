"""``python -m conceptlib``: the same as the ``conceptlib`` command."""

import sys

from conceptlib.cli import main

sys.exit(main())
