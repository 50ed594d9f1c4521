"""`python -m tools.demo_measure`: see segnet_bvlc.demo.measure."""

import sys

from segnet_bvlc.demo.measure import main

if __name__ == "__main__":
    sys.exit(main())
