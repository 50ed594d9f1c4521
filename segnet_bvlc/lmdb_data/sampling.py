"""The training batches' order over an LMDB pair: which samples, in which order, mirrored or not, as a pure
function of (seed, position), and their decoding into a batch's arrays. NumPy only; the Caffe layer
`layers.camvid_data.CamVidData` runs it inside a net.

- every image once per epoch, in a fresh random order each epoch (paper §3.2: "shuffled before each epoch";
  caffe-segnet's DenseImageData reshuffles when its list wraps). Batches straddle the epoch boundary exactly as
  in DenseImageData: a batch that runs past the last image of an epoch continues with the first images of the
  next epoch's order, so the stream of samples is a concatenation of permutations and each epoch still visits
  every image exactly once (one batch may hold the same image twice, once from each epoch);
- mirroring flips image and label together (left-right), as DenseImageData does;
- deterministic given `seed`, and resumable: sample number p (counting from the first sample of iteration 0)
  is a pure function of (seed, p), see `order_at`; a Sampler started at `start_iter` continues where an
  uninterrupted one would be.
"""

from __future__ import annotations

import numpy as np


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


def fill_batch(reader, indices, flips, data: np.ndarray, label: np.ndarray) -> None:
    """Decode the batch straight into the (float32) top arrays; mirrored samples are flipped along W."""
    for i, (index, flip) in enumerate(zip(indices, flips)):
        image, target = reader[int(index)]
        if flip:
            image, target = image[:, :, ::-1], target[:, :, ::-1]
        data[i] = image
        label[i] = target
