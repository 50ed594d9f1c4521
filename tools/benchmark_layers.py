"""`python -m tools.benchmark_layers`: see segnet_bvlc.benchmark.per_layer."""

import sys

from segnet_bvlc.benchmark.per_layer import main

if __name__ == "__main__":
    sys.exit(main())
