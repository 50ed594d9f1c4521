"""segnet-bvlc's library: every stage of the SegNet reproduction, in the order the data flows.

    core        infrastructure (errors, files, logging, provenance, fault points) and the published facts
    dataset     a dataset's class table, split lists, images and labels
    lmdb_data   the image/label LMDB pairs Caffe trains from
    nets        generated nets loaded and checked; weights files of any Caffe
    bn_stats    exact BatchNorm statistics of a trained net
    evaluation  the paper's metrics (G, C, mIoU, BF) and predictions
    training    a run: config, loop, snapshots, validation, memory estimate, initialisation
    pipeline    conversion -> training -> BN statistics -> evaluation, as `make camvid-train` runs it
    study, benchmark, demo   the Table 1 study, the speed and memory benchmarks, the web demo

The commands (`python -m tools.NAME`) are thin layers over these; `prototxt/` and `layers/` sit below `nets`
and import only `core`, `dataset` and `lmdb_data`. docs/architecture.md has the picture.
"""

import os

# Caffe's glog INFO lines (a screen per net) drown the tools' own progress output; GLOG_minloglevel=0 restores them.
os.environ.setdefault("GLOG_minloglevel", "2")
