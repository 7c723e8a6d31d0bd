"""``python -m xentfast.bench``: see :mod:`xentfast.bench`."""
import sys

from xentfast.bench.cli import main

sys.exit(main())
