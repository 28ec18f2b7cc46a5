import sys

from maskgit.cli import run

sys.exit(run())
