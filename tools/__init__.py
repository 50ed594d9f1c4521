"""The toolkit's command-line tools (`python -m tools.NAME --help`)."""

import os

# Caffe's glog INFO lines (a screen per net) drown the tools' own progress output; GLOG_minloglevel=0 restores them.
os.environ.setdefault("GLOG_minloglevel", "2")
