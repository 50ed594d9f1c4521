"""`python -m tools.benchmark_memory`: see segnet_bvlc.benchmark.memory."""

import sys

from segnet_bvlc.benchmark.memory import main

if __name__ == "__main__":
    sys.exit(main())
