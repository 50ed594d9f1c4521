"""`python -m tools.convert_weights`: see segnet_bvlc.nets.convert."""

import sys

from segnet_bvlc.nets.convert import main

if __name__ == "__main__":
    sys.exit(main())
