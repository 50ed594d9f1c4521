"""`python -m tools.benchmark`: see segnet_bvlc.benchmark.run."""

import sys

from segnet_bvlc.benchmark.run import main

if __name__ == "__main__":
    sys.exit(main())
