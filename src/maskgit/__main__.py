"""``python -m maskgit``: the same as the ``maskgit`` command."""

import sys

from maskgit.cli import run

sys.exit(run())
