"""``python -m livertumor``: see :mod:`livertumor.cli`."""

import sys

from .cli import main

sys.exit(main())
