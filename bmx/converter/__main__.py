"""``python -m bmx.converter``: the ``bmx-convert`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
