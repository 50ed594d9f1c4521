"""CamVidData: the training data layer, a Python layer over the LMDB pair of `python -m tools.camvid_to_lmdb`.

    layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "layers.camvid_data" layer: "CamVidData"
        param_str: '{"source": "data/lmdb/camvid-train", "batch_size": 4, "seed": 1, "shuffle": true}' } }

It replaces caffe-segnet's DenseImageData, which stock BVLC Caffe lacks:
- tops `data` (N x 3 x H x W float32, raw 0-255 BGR, no mean, no scale: SegNet's CamVid prototxts have no
  transform_param) and `label` (N x 1 x H x W float32, 0..11, 11 = void);
- every image once per epoch, in a fresh random order each epoch (paper §3.2: "shuffled before each epoch";
  DenseImageData reshuffles when its list wraps). Batches straddle the epoch boundary exactly as in
  DenseImageData: a batch that runs past the last image of an epoch continues with the first images of the next
  epoch's order, so the stream of samples is a concatenation of permutations and each epoch still visits every
  image exactly once (one batch may hold the same image twice, once from each epoch);
- `mirror` flips image and label together (left-right), as DenseImageData does;
- deterministic given `seed`, and resumable: sample number p (counting from the first sample of iteration 0)
  is a pure function of (seed, p), see `order_at`. `start_iter` makes a resumed net continue where an
  uninterrupted one would be. The training tool passes the solver's iteration when it restores a snapshot.

param_str keys (JSON): source (required), batch_size (4), seed (1), shuffle (true), mirror (false),
start_iter (0), cache (false: decode from LMDB each batch; true: decode all once into RAM).
Unlike DenseImageData, the first epoch is also shuffled with the seed rather than Caffe's global RNG.
"""

from __future__ import annotations

import json

import numpy as np

# What a net's python_param names to load this layer (the generators and the tools read it from here).
MODULE, LAYER = "layers.camvid_data", "CamVidData"

DEFAULTS = {"batch_size": 4, "seed": 1, "shuffle": True, "mirror": False, "start_iter": 0, "cache": False}


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The visiting order of epoch `epoch`: a permutation of range(n) drawn from (seed, epoch) alone."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


def epoch_mirror(n: int, seed: int, epoch: int) -> np.ndarray:
    """Per-position mirror flags of epoch `epoch` (probability 1/2), independent of the order stream."""
    return np.random.default_rng([seed, epoch, 1]).random(n) < 0.5


def order_at(iteration: int, n: int, batch_size: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """The dataset indices of batch `iteration` (pure: the same for a resumed and an uninterrupted run)."""
    positions = iteration * batch_size + np.arange(batch_size)
    epochs, slots = np.divmod(positions, n)
    return np.array([epoch_order(n, seed, int(e), shuffle)[s] for e, s in zip(epochs, slots)])


class Sampler:
    """The batch stream without Caffe: `next()` gives (indices, mirror flags) of the next batch.

    Equal to `order_at` for every iteration; caches the current epoch's order so a batch costs O(batch_size).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 1, shuffle: bool = True, mirror: bool = False,
                 start_iter: int = 0):
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.shuffle, self.mirror = shuffle, mirror
        self.iteration = start_iter
        self._epoch, self._order, self._flips = None, None, None

    def _load_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = epoch_order(self.n, self.seed, epoch, self.shuffle)
            self._flips = epoch_mirror(self.n, self.seed, epoch) if self.mirror else np.zeros(self.n, bool)

    def batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        indices = np.empty(self.batch_size, np.int64)
        flips = np.empty(self.batch_size, bool)
        for i in range(self.batch_size):
            epoch, slot = divmod(iteration * self.batch_size + i, self.n)
            self._load_epoch(epoch)
            indices[i], flips[i] = self._order[slot], self._flips[slot]
        return indices, flips

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        result = self.batch(self.iteration)
        self.iteration += 1
        return result


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


def fill_batch(reader, indices, flips, data: np.ndarray, label: np.ndarray) -> None:
    """Decode the batch straight into the (float32) top arrays; mirrored samples are flipped along W."""
    for i, (index, flip) in enumerate(zip(indices, flips)):
        image, target = reader[int(index)]
        if flip:
            image, target = image[:, :, ::-1], target[:, :, ::-1]
        data[i] = image
        label[i] = target


try:
    import caffe
except ImportError:  # the sampler and fill_batch above stay usable without Caffe
    caffe = None

if caffe is not None:

    class CamVidData(caffe.Layer):
        """Tops: data (N,3,H,W) raw BGR 0-255 float32, label (N,1,H,W) float32 0..11. No bottoms."""

        def setup(self, bottom, top):
            from segnet_bvlc.lmdb_data.pairs import PairReader

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
