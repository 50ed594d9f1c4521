"""`python -m tools.cpu_speed`: see segnet_bvlc.benchmark.cpu_speed."""

import sys

from segnet_bvlc.benchmark.cpu_speed import main

if __name__ == "__main__":
    sys.exit(main())
