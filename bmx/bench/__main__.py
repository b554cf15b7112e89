"""``python -m bmx.bench``: the ``bmx-bench`` command."""
import sys

from .cli import main

sys.exit(main())
