"""`python -m tools.benchmark_data`: see segnet_bvlc.benchmark.data."""

import sys

from segnet_bvlc.benchmark.data import main

if __name__ == "__main__":
    sys.exit(main())
