"""CamVidData: the training data layer, a Python layer over the LMDB pair of `python -m tools.camvid_to_lmdb`.

    layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "layers.camvid_data" layer: "CamVidData"
        param_str: '{"source": "data/lmdb/camvid-train", "batch_size": 4, "seed": 1, "shuffle": true}' } }

It replaces caffe-segnet's DenseImageData, which stock BVLC Caffe lacks:
- tops `data` (N x 3 x H x W float32, raw 0-255 BGR, no mean, no scale: SegNet's CamVid prototxts have no
  transform_param) and `label` (N x 1 x H x W float32, class indices, the last = void);
- the batches' order (every image once per epoch, reshuffled each epoch, batches straddling the epoch boundary
  as in DenseImageData), `mirror` (image and label flipped together) and the resumable, seed-determined
  stream are segnet_bvlc.lmdb_data.sampling's; `start_iter` makes a resumed net continue where an
  uninterrupted one would be. The training tool passes the solver's iteration when it restores a snapshot.

param_str keys (JSON): source (required), batch_size (4), seed (1), shuffle (true), mirror (false),
start_iter (0), cache (false: decode from LMDB each batch; true: decode all once into RAM).
Unlike DenseImageData, the first epoch is also shuffled with the seed rather than Caffe's global RNG.
"""

from __future__ import annotations

import json

from segnet_bvlc.lmdb_data.pairs import PairReader
from segnet_bvlc.lmdb_data.sampling import Sampler, fill_batch

# What a net's python_param names to load this layer (the generators and the tools read it from here).
MODULE, LAYER = "layers.camvid_data", "CamVidData"

DEFAULTS = {"batch_size": 4, "seed": 1, "shuffle": True, "mirror": False, "start_iter": 0, "cache": False}


def parse_params(param_str: str) -> dict:
    try:
        given = json.loads(param_str) if param_str.strip() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"CamVidData: param_str is not JSON ({error}): {param_str!r}") from None
    unknown = set(given) - set(DEFAULTS) - {"source"}
    if unknown:
        raise ValueError(f"CamVidData: unknown param_str keys {sorted(unknown)}; known: source, {', '.join(DEFAULTS)}")
    if "source" not in given:
        raise ValueError("CamVidData: param_str needs \"source\" (an output folder of tools.camvid_to_lmdb)")
    return {**DEFAULTS, **given}


try:
    import caffe
except ImportError:  # parse_params stays usable without Caffe (and this module importable)
    caffe = None

if caffe is not None:

    class CamVidData(caffe.Layer):
        """Tops: data (N,3,H,W) raw BGR 0-255 float32, label (N,1,H,W) float32 class indices. No bottoms."""

        def setup(self, bottom, top):
            if bottom:
                raise ValueError("CamVidData takes no bottoms")
            if len(top) != 2:
                raise ValueError("CamVidData has two tops: data and label")
            self.params = parse_params(self.param_str)
            self.reader = PairReader(self.params["source"], cache=bool(self.params["cache"]))
            image, label = self.reader[0]
            self.image_shape, self.label_shape = image.shape, label.shape
            p = self.params
            self.sampler = Sampler(len(self.reader), int(p["batch_size"]), int(p["seed"]), bool(p["shuffle"]),
                                   bool(p["mirror"]), int(p["start_iter"]))
            self.last_indices, self.last_flips = None, None

        def reshape(self, bottom, top):
            n = self.sampler.batch_size
            top[0].reshape(n, *self.image_shape)
            top[1].reshape(n, *self.label_shape)

        def forward(self, bottom, top):
            self.last_indices, self.last_flips = self.sampler.next()
            fill_batch(self.reader, self.last_indices, self.last_flips, top[0].data, top[1].data)

        def backward(self, top, propagate_down, bottom):
            pass
