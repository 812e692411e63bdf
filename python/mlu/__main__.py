"""``python -m mlu``: the same as the ``mlu`` console command."""

import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
