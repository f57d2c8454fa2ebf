"""`python -m benchmarks.docs [--check]`."""

import sys

from benchmarks.docs import main

sys.exit(main())
