"""caffe-segnet's own schema (caffe_segnet.proto, verbatim), its compiler (schema.py) and the fork-format test
caffemodels written with it (caffemodels.py)."""
