"""``python -m tether_cli``: the ``tether`` command without the console script."""

import sys

from tether_cli.main import cli

sys.exit(cli())
