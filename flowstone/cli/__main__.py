"""`python -m flowstone.cli`: the same as the `flowstone` command."""

import sys

from flowstone.cli import main

sys.exit(main())
