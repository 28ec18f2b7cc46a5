import sys

from maskgit.cli import main

sys.exit(main())
