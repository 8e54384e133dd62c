import sys

from ctr.cli import main

sys.exit(main())
