"""segnet_bvlc.lmdb_data.sampling, the epoch sampler (pure), and layers.camvid_data, the CamVidData Python layer
inside a real caffe.Net."""

from __future__ import annotations

import json
import shutil

import caffe
import lmdb
import numpy as np
import pytest
from caffe import layers as L

from layers.camvid_data import parse_params
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.lmdb_data.pairs import PairReader
from segnet_bvlc.lmdb_data.sampling import Sampler, epoch_mirror, epoch_order, order_at
from tests.conftest import net_from_spec

N = 5  # images in the test LMDB; batch 2 makes batches straddle epoch boundaries


@pytest.fixture(scope="module")
def source(camvid_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("layer") / "train5"
    convert(camvid_dir, "train", out, height=45, width=60, limit=N, progress=False)
    return out


def data_net(source, **params):
    n = caffe.NetSpec()
    n.data, n.label = L.Python(ntop=2, python_param=dict(
        module="layers.camvid_data", layer="CamVidData", param_str=json.dumps({"source": str(source), **params})))
    return net_from_spec(n, caffe.TRAIN)


def identify(batch: np.ndarray, images: np.ndarray) -> list[int]:
    """Which stored image each sample of a batch is (by exact pixel equality, unmirrored or mirrored)."""
    found = []
    for sample in batch:
        hits = [i for i, image in enumerate(images)
                if np.array_equal(sample, image) or np.array_equal(sample, image[:, :, ::-1])]
        assert len(hits) == 1
        found.append(hits[0])
    return found


# ---- the pure sampler ----

def test_every_epoch_is_a_permutation_and_batches_straddle():
    n, batch = 7, 3
    sampler = Sampler(n, batch, seed=3)
    stream = np.concatenate([sampler.next()[0] for _ in range(7 * 4)])  # 84 samples = 12 epochs
    epochs = stream.reshape(-1, n)
    for epoch, order in enumerate(epochs):
        assert sorted(order) == list(range(n))
        np.testing.assert_array_equal(order, epoch_order(n, 3, epoch))
    assert len({tuple(e) for e in epochs}) > 1  # the order changes between epochs
    # Batch 2 covers samples 6, 7, 8: the last of epoch 0 and the first two of epoch 1 (DenseImageData's wrap).
    np.testing.assert_array_equal(order_at(2, n, batch, 3), [epochs[0][6], epochs[1][0], epochs[1][1]])


def test_sampler_equals_pure_order_and_resumes():
    n, batch, seed = 11, 4, 7
    full = Sampler(n, batch, seed)
    uninterrupted = [full.next()[0] for _ in range(30)]
    for i, indices in enumerate(uninterrupted):
        np.testing.assert_array_equal(indices, order_at(i, n, batch, seed))
    resumed = Sampler(n, batch, seed, start_iter=13)
    for i in range(13, 30):
        np.testing.assert_array_equal(resumed.next()[0], uninterrupted[i])


def test_seed_shuffle_and_mirror_flags():
    a, b = Sampler(20, 4, seed=1), Sampler(20, 4, seed=2)
    assert not all(np.array_equal(a.next()[0], b.next()[0]) for _ in range(5))
    plain = Sampler(5, 2, shuffle=False)
    assert np.concatenate([plain.next()[0] for _ in range(5)]).tolist() == [0, 1, 2, 3, 4] * 2
    stream = Sampler(50, 10, mirror=True)
    flips = np.concatenate([stream.next()[1] for _ in range(20)])
    assert 0.35 < flips.mean() < 0.65
    assert not np.concatenate([Sampler(50, 10).next()[1] for _ in range(3)]).any()


def test_param_str_errors():
    with pytest.raises(ValueError, match="source"):
        parse_params('{"batch_size": 4}')
    with pytest.raises(ValueError, match="unknown"):
        parse_params('{"source": "x", "batchsize": 4}')
    with pytest.raises(ValueError, match="not JSON"):
        parse_params("{source: x}")


# ---- the layer in a real caffe.Net ----

def test_layer_tops_are_raw_bgr_and_labels(source):
    net = data_net(source, batch_size=2, shuffle=False)
    net.forward()
    assert net.blobs["data"].data.shape == (2, 3, 45, 60) and net.blobs["label"].data.shape == (2, 1, 45, 60)
    assert net.blobs["data"].data.dtype == np.float32
    with PairReader(source) as reader:
        for i in range(2):
            np.testing.assert_array_equal(net.blobs["data"].data[i], reader[i][0].astype(np.float32))
            np.testing.assert_array_equal(net.blobs["label"].data[i], reader[i][1].astype(np.float32))
    assert net.blobs["data"].data.max() > 200  # raw 0-255, no mean subtraction, no scaling


def test_layer_covers_each_image_once_per_epoch(source):
    with PairReader(source) as reader:
        images = np.stack([reader[i][0] for i in range(N)]).astype(np.float32)
    net = data_net(source, batch_size=2, seed=5)
    seen = []
    for _ in range(10):  # 20 samples = 4 epochs of 5
        net.forward()
        seen += identify(net.blobs["data"].data, images)
    epochs = [seen[i:i + N] for i in range(0, len(seen), N)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(N))
    assert len({tuple(e) for e in epochs}) > 1
    assert seen == [int(i) for it in range(10) for i in order_at(it, N, 2, 5)]


def read_lmdb_directly(source, scratch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The stored images and labels, read with the lmdb package and caffe_pb2.Datum only (not tools.lmdb_io).

    py-lmdb opens one path once per process and tools.lmdb_io keeps the source open, so a byte copy is read."""
    from caffe.proto import caffe_pb2

    columns = []
    for name in ("images", "labels"):
        copy = shutil.copytree(source / name, scratch / name)
        env = lmdb.open(str(copy), readonly=True, lock=False, subdir=True)
        arrays = []
        with env.begin() as txn:
            for _, value in txn.cursor():  # keys %08d_<stem>: lexicographic order is the list order
                datum = caffe_pb2.Datum.FromString(value)
                arrays.append(np.frombuffer(datum.data, np.uint8).reshape(datum.channels, datum.height, datum.width))
        env.close()
        columns.append(arrays)
    return columns[0], columns[1]


def test_layer_mirror_flips_image_and_label_together(source, tmp_path):
    """Which samples were mirrored is found from the pixels alone (each output against every stored image
    and its left-right mirror), then checked against the pure per-epoch flags and the label's own flip."""
    images, labels = read_lmdb_directly(source, tmp_path)
    assert len(images) == N and len(labels) == N
    net = data_net(source, batch_size=N, seed=2, mirror=True)  # one batch = one epoch
    flipped = 0
    for epoch in range(4):
        net.forward()
        seen = []
        for i in range(N):
            sample, target = net.blobs["data"].data[i], net.blobs["label"].data[i]
            hits = [(j, flip) for j in range(N) for flip in (False, True)
                    if np.array_equal(sample, images[j][:, :, ::-1] if flip else images[j])]
            assert len(hits) == 1, hits  # no stored image equals its own mirror
            index, flip = hits[0]
            expected_label = labels[index][:, :, ::-1] if flip else labels[index]
            np.testing.assert_array_equal(target, expected_label.astype(np.float32))
            seen.append((index, flip))
            flipped += flip
        # the flags are per position and drawn independently of the order (docs: epoch_mirror)
        assert [f for _, f in seen] == epoch_mirror(N, 2, epoch).tolist()
        assert [j for j, _ in seen] == epoch_order(N, 2, epoch).tolist()
    assert 0 < flipped < 4 * N


def test_layer_resume_equals_uninterrupted_and_cache_equals_lmdb(source):
    params = dict(batch_size=3, seed=9, mirror=True)
    full = data_net(source, **params)
    batches = []
    for _ in range(7):
        full.forward()
        batches.append((full.blobs["data"].data.copy(), full.blobs["label"].data.copy()))
    resumed = data_net(source, start_iter=4, cache=True, **params)
    for i in range(4, 7):
        resumed.forward()
        np.testing.assert_array_equal(resumed.blobs["data"].data, batches[i][0])
        np.testing.assert_array_equal(resumed.blobs["label"].data, batches[i][1])
