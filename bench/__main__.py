"""``python -m bench [--quick] [--only NAME ...] [--strict]`` (``make bench``): every benchmark,
one table. The same as ``python -m bench.run_all``."""

from __future__ import annotations

import sys

from bench.run_all import main

sys.exit(main())
