"""`python -m tools.camvid_to_lmdb`: see segnet_bvlc.lmdb_data.convert."""

import sys

from segnet_bvlc.lmdb_data.convert import main

if __name__ == "__main__":
    sys.exit(main())
