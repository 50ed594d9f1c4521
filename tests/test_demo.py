"""The web demo (tools.demo) as a user meets it: a real server in a subprocess, real Caffe models, real CamVid,
and one real browser (Debian's headless Chromium driven by playwright).

Models: a run folder (`runs/sub/bayes`: untrained SegNet-Basic with Bayesian SegNet's dropout at 48x64, made by
the project's generator, BatchNorm statistics set to the identity) and a converted-style pair given as
--weights/--deploy (tests.test_segment's hue net, no dropout). What the API returns is checked against
`tools.segment`'s command line on the same image and model, against an independent recomputation (Caffe scores ->
PyTorch bilinear upsampling -> argmax), and the per-image metrics and legend against NumPy counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from io import BytesIO
from pathlib import Path

import caffe
import cv2
import numpy as np
import pytest
from PIL import Image

from layers import mc_dropout
from prototxt import Options, build_net
from segnet_bvlc.dataset import camvid
from segnet_bvlc.demo.measure import free_port
from segnet_bvlc.nets.load import load_net, net_from_param, read_weights
from tests.conftest import ROOT
from tests.test_segment import hue_net, hue_spec

CHROMIUM = "/usr/bin/chromium"
SAMPLES = 2  # the page's Monte Carlo samples for the dropout model (--samples)
ENV = dict(os.environ, PYTHONPATH=str(ROOT), GLOG_minloglevel="2", SEGNET_GPU="")


# ------------------------------------------------------------------------------------------------ fixtures

def make_models(root: Path) -> dict:
    run = root / "runs" / "sub" / "bayes"
    (run / "net").mkdir(parents=True)
    deploy = build_net("segnet-basic", Options(split="deploy", batch=1, height=48, width=64, dropout=True))
    (run / "net" / "deploy.prototxt").write_text(str(deploy))
    caffe.set_random_seed(0)
    net = net_from_param(deploy)
    for name, blobs in net.params.items():
        if name.endswith("_bn"):  # untrained: mean 0, variance 1, factor 1
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0, 1, 1
    net.params["conv_classifier"][0].data[...] *= 0.05  # logits of a few units: soft probabilities, few ties
    net.save(str(run / "inference.caffemodel"))
    (run / "config.json").write_text(json.dumps({"arch": "segnet-basic"}))
    unfinished = root / "results" / "study" / "unfinished"  # no inference.caffemodel: not offered
    (unfinished / "net").mkdir(parents=True)
    (unfinished / "net" / "deploy.prototxt").write_text(str(deploy))
    hue = root / "converted"
    hue.mkdir()
    (hue / "hue.prototxt").write_text(str(hue_spec(90, 120).to_proto()))
    hue_net(90, 120).save(str(hue / "hue.caffemodel"))
    return {"run": run, "run_deploy": run / "net" / "deploy.prototxt", "run_weights": run / "inference.caffemodel",
            "hue_deploy": hue / "hue.prototxt", "hue_weights": hue / "hue.caffemodel"}


def get(url: str):
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory, camvid_dir):
    root = tmp_path_factory.mktemp("demo")
    models = make_models(root)
    port = free_port()
    log = open(root / "server.log", "w")
    cmd = [sys.executable, "-m", "tools.demo", "--run", str(models["run"]), "--weights", str(models["hue_weights"]),
           "--deploy", str(models["hue_deploy"]), "--search", str(root / "runs"), str(root / "results"),
           "--camvid", str(camvid_dir), "--port", str(port), "--samples", str(SAMPLES),
           "--max-upload-mb", "1", "--max-upload-mp", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            config = get(f"{base}/api/config")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the demo did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.2)
    yield {"base": base, "config": config, "root": root, "proc": proc, **models}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def pairs(camvid_dir):
    return camvid.read_list(camvid_dir, "test")[:2]


@pytest.fixture(scope="module")
def odd_jpeg(tmp_path_factory, pairs) -> Path:
    """A 317x211 JPEG crop of a CamVid test image: another size than the net's, another format than CamVid's."""
    path = tmp_path_factory.mktemp("upload") / "odd.jpg"
    bgr = cv2.imread(str(pairs[1][0]))[40:251, 60:377]
    assert cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def run_segment(deploy: Path, weights: Path, images: list[Path], out: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "tools.segment", "--model", str(deploy), "--weights", str(weights),
                        "--out", str(out), "--json", *extra, *map(str, images)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def predict(server, image: str, model: str, samples: int = 0) -> tuple[dict, np.ndarray]:
    q = urllib.parse.urlencode({"image": image, "model": model, "samples": samples})
    body = get(f"{server['base']}/api/predict?{q}")
    labels = np.array(Image.open(BytesIO(get(server["base"] + body["labels_url"]))))
    return body, labels


def torch_oracle(prob: np.ndarray, size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, winning score and the pixels clear of near-ties, of net-size scores upsampled by PyTorch."""
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.from_numpy(prob[None].astype(np.float64)), size=tuple(size), mode="bilinear",
                       align_corners=False)[0].numpy()
    top2 = np.sort(up, axis=0)[-2:]
    return up.argmax(axis=0), up.max(axis=0), top2[1] - top2[0] > 1e-5


def feed(net, bgr):
    """The image as the net takes it, written out: INTER_AREA when shrinking both sides, INTER_LINEAR else."""
    h, w = net.blobs["data"].data.shape[2:]
    flag = cv2.INTER_AREA if h <= bgr.shape[0] and w <= bgr.shape[1] else cv2.INTER_LINEAR
    net.blobs["data"].data[0] = cv2.resize(bgr, (w, h), interpolation=flag).transpose(2, 0, 1)


# ------------------------------------------------------------------------------------------------ API

def test_model_picker_lists_finished_runs_and_the_given_weights(server):
    config = server["config"]
    by_id = {m["id"]: m for m in config["models"]}
    run_id = str(server["run"].resolve())  # outside the working directory: the absolute path
    assert set(by_id) == {run_id, f"weights:{server['hue_weights'].resolve()}"}  # the unfinished run is not there
    assert config["default_model"] == run_id
    assert by_id[run_id]["dropout"] is True and by_id[run_id]["arch"] == "segnet-basic"
    assert (by_id[run_id]["height"], by_id[run_id]["width"]) == (48, 64)
    assert by_id[f"weights:{server['hue_weights'].resolve()}"]["dropout"] is False
    assert config["gallery_size"] == 233 and config["upsample"] == "bilinear" and config["samples"] == SAMPLES
    page = get(server["base"] + "/").decode()
    assert 'id="model-a"' in page and "/static/app.js" in page


def test_predictions_equal_tools_segment_and_an_independent_recomputation(server, pairs, odd_jpeg, tmp_path):
    """Gallery image and an uploaded odd-size JPEG, deterministic and Monte Carlo: the API's labels PNG is
    tools.segment's NAME.png (the run's model), and agrees with Caffe scores -> torch bilinear -> argmax (clear of
    near-ties; both models)."""
    image_path = pairs[0][0]
    run_id, hue_id = str(server["run"].resolve()), f"weights:{server['hue_weights'].resolve()}"
    status, up = request(f"{server['base']}/api/upload", odd_jpeg.read_bytes(), {"Content-Type": "image/jpeg"})
    assert status == 200 and (up["width"], up["height"]) == (317, 211)
    gallery_id = f"camvid:{image_path.stem}"

    cli = {}
    for key, (deploy, weights, extra) in {
            "run": (server["run_deploy"], server["run_weights"], ()),
            "run-mc": (server["run_deploy"], server["run_weights"], ("--samples", str(SAMPLES), "--seed", "0")),
            }.items():
        out = tmp_path / key
        run_segment(deploy, weights, [image_path, odd_jpeg], out, *extra)
        cli[key] = {p: np.array(Image.open(out / f"{p.stem}.png")) for p in (image_path, odd_jpeg)}

    api = {}
    for key, model, samples in (("run", run_id, 0), ("run-mc", run_id, SAMPLES), ("hue", hue_id, 0)):
        for path, image_id in ((image_path, gallery_id), (odd_jpeg, up["id"])):
            body, labels = predict(server, image_id, model, samples)
            assert labels.shape == cv2.imread(str(path)).shape[:2] == (body["height"], body["width"])
            assert body["upsample"] == "bilinear" and body["samples"] == samples
            api[key, path] = labels
            if key in cli:
                assert np.array_equal(labels, cli[key][path]), (key, path.name)

    # independent recomputation for the gallery image
    bgr = cv2.imread(str(image_path))
    plain = load_net(server["run_deploy"], server["run_weights"])
    feed(plain, bgr)
    expected, _, clear = torch_oracle(plain.forward()["prob"][0], bgr.shape[:2])
    assert clear.mean() > 0.99 and (cli["run"][image_path][clear] == expected[clear]).all()
    assert len(np.unique(expected)) > 3  # the untrained net still predicts many classes

    from segnet_bvlc.nets.load import load_net_param
    sampling = net_from_param(mc_dropout.sampling_net_param(load_net_param(server["run_deploy"])),
                              weights=read_weights(server["run_weights"]))
    mc_dropout.seed_net(sampling, 0)
    feed(sampling, bgr)
    mean = np.mean([sampling.forward()["prob"][0].astype(np.float64) for _ in range(SAMPLES)], axis=0)
    expected_mc, _, clear = torch_oracle(mean, bgr.shape[:2])
    assert clear.mean() > 0.99 and (cli["run-mc"][image_path][clear] == expected_mc[clear]).all()
    assert (expected_mc != expected).mean() > 0.01  # sampling really changed the prediction

    hue = load_net(server["hue_deploy"], server["hue_weights"])
    small = cv2.imread(str(odd_jpeg))
    feed(hue, small)
    expected, _, clear = torch_oracle(hue.forward()["prob"][0], small.shape[:2])
    assert clear.mean() > 0.99 and (api["hue", odd_jpeg][clear] == expected[clear]).all()


def test_metrics_legend_pixel_and_uncertainty(server, pairs):
    image_path, gt_path = pairs[0]
    run_id = str(server["run"].resolve())
    body, labels = predict(server, f"camvid:{image_path.stem}", run_id, SAMPLES)
    gt = np.array(Image.open(gt_path)).astype(np.int64)

    # per-image metrics: NumPy confusion counts, void (11) ignored, averages over all 11 classes (absent: 0)
    valid = gt != camvid.VOID
    cm = np.bincount(gt[valid] * 11 + labels[valid], minlength=121).reshape(11, 11).astype(np.float64)
    diag, rows, cols = np.diag(cm), cm.sum(1), cm.sum(0)
    iou = np.divide(diag, rows + cols - diag, out=np.zeros(11), where=rows > 0)
    m = body["metrics"]
    assert m["global_accuracy"] == pytest.approx(diag.sum() / cm.sum(), abs=1e-12)
    assert m["class_average_accuracy"] == pytest.approx(np.divide(diag, rows, out=np.zeros(11),
                                                                  where=rows > 0).sum() / 11, abs=1e-12)
    assert m["mean_iou"] == pytest.approx(iou.sum() / 11, abs=1e-12)
    union = rows + cols - diag
    assert m["mean_iou_present"] == pytest.approx((diag[union > 0] / union[union > 0]).mean(), abs=1e-12)
    from segnet_bvlc.evaluation import evaluate
    bf = evaluate.evaluate_arrays([(gt, labels)], boundary=True)["boundary_f1"]
    assert 0 < m["boundary_f1"] == pytest.approx(bf, abs=1e-12)

    # legend: model class order, shares of the image summing to 100, counts = np.bincount
    counts = np.bincount(labels.ravel(), minlength=11)
    legend = body["legend"]
    assert [c["name"] for c in legend] == camvid.CLASSES
    assert [c["pixels"] for c in legend] == counts.tolist()
    assert sum(c["share"] for c in legend) == pytest.approx(100, abs=1e-9)
    assert [c["share"] for c in legend] == pytest.approx((100 * counts / labels.size).tolist(), abs=1e-12)
    assert legend[3]["colour"] == "#%02x%02x%02x" % tuple(camvid.COLOURS[3])

    # the pixel a user hovers: the label PNG's class, the ground truth's, an uncertainty
    unc = np.array(Image.open(BytesIO(get(server["base"] + body["uncertainty_url"])))) / (65535 / 0.25)
    for x, y in ((0, 0), (479, 359), (123, 201)):
        p = get(f"{server['base']}/api/pixel?result={body['id']}&x={x}&y={y}")
        assert p["class"] == labels[y, x] and p["name"] == camvid.CLASSES[labels[y, x]]
        assert p["gt_class"] == gt[y, x] and 0 < p["score"] <= 1
        assert abs(p["uncertainty"] - unc[y, x]) <= 0.5 / (65535 / 0.25)
    assert body["uncertainty_max"] > 0 and body["gt_url"]


def one_line(status: int, body: dict, code: int, *words: str) -> None:
    assert status == code, (status, body)
    detail = body["detail"]
    assert "\n" not in detail and len(detail) < 200 and "Traceback" not in detail
    for word in words:
        assert word in detail, detail


def test_bad_requests_get_a_4xx_with_a_one_line_reason(server, pairs):
    base = server["base"]
    upload = f"{base}/api/upload"
    png = pairs[0][0].read_bytes()  # 360x480 PNG, about 350 KB
    one_line(*request(upload, b"hello, not an image", {"Content-Type": "image/png"}), 400, "not an image")
    one_line(*request(upload, png[:len(png) // 2], {"Content-Type": "image/png"}), 400, "cannot decode")
    one_line(*request(upload, png, {"Content-Type": "image/jpeg"}), 400, "PNG", "image/jpeg")
    one_line(*request(upload, png, {"Content-Type": "image/gif"}), 415, "unsupported type image/gif")
    one_line(*request(upload, png, {"Content-Type": "text/plain"}), 415, "PNG or JPEG")
    gif = BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    one_line(*request(upload, gif.getvalue(), {"Content-Type": "image/png"}), 415, "GIF")
    big = BytesIO()  # 1.4 MB of noise > --max-upload-mb 1
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(big, "PNG")
    one_line(*request(upload, big.getvalue(), {"Content-Type": "image/png"}), 413, "MiB")
    wide = BytesIO()  # a few KB but 1.2 megapixels > --max-upload-mp 1
    Image.new("RGB", (1200, 1000)).save(wide, format="PNG")
    one_line(*request(upload, wide.getvalue(), {"Content-Type": "image/png"}), 413, "megapixels")
    one_line(*request(f"{base}/api/predict?image=camvid:nope&model=x"), 404, "unknown image")
    image = f"camvid:{pairs[0][0].stem}"
    one_line(*request(f"{base}/api/predict?image={image}&model=nope"), 404, "unknown model")
    hue = urllib.parse.quote(f"weights:{server['hue_weights'].resolve()}")
    one_line(*request(f"{base}/api/predict?image={image}&model={hue}&samples=3"), 422, "no Dropout layer")
    one_line(*request(f"{base}/api/predict?image={image}&model={hue}&samples=many"), 422, "samples")
    one_line(*request(f"{base}/api/pixel?result=nope&x=1&y=1"), 404, "predict again")
    # still serving
    assert get(f"{base}/api/config")["models"] and server["proc"].poll() is None


def test_bad_model_at_start_is_one_line_and_non_zero(server, tmp_path):
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(b"\x00\x01not a caffemodel" * 10)
    lonely = tmp_path / "lonely.caffemodel"  # no run folder, no lonely.prototxt beside it
    lonely.write_bytes(server["hue_weights"].read_bytes())
    cases = [
        (["--run", str(tmp_path / "missing")], "run folder not found"),
        (["--run", str(server["root"] / "results" / "study" / "unfinished")], "not a finished run folder"),
        (["--weights", str(garbage), "--deploy", str(server["hue_deploy"])], "not a caffemodel"),
        (["--weights", str(lonely)], "pass DEPLOY="),
    ]
    for args, message in cases:
        r = subprocess.run([sys.executable, "-m", "tools.demo", *args, "--port", str(free_port()),
                            "--search", str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("demo: error: "), r.stderr
        assert message in lines[0]
    # make demo passes RUN/WEIGHTS/DEPLOY/PORT/HOST through, and binds 127.0.0.1 by default
    n = subprocess.run(["make", "-n", "demo", "RUN=runs/x", "PORT=8123"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    line = [x for x in n.stdout.splitlines() if "tools.demo" in x][0]
    assert "--run runs/x" in line and "--port 8123" in line and "--host 127.0.0.1" in line
    assert "--weights" not in line


# ------------------------------------------------------------------------------------------------ browser

def test_in_a_real_browser(server, pairs):
    """Headless Debian Chromium: pick a gallery image, wait for the segmentation, move the opacity slider, hover a
    pixel, read the class shown, compare it with the API; then side by side with the second model."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: run tools/install_browser.sh (make browser)"
    run_id, hue_id = str(server["run"].resolve()), f"weights:{server['hue_weights'].resolve()}"
    stem = pairs[1][0].stem
    errors = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1280, "height": 1000},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server["base"] + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            assert page.input_value("#model-a") == run_id
            page.click(f"#gallery img[data-id='camvid:{stem}']")
            page.wait_for_selector("#result-a[data-state='done']", timeout=60000)
            assert page.locator("#result-a .legend tbody tr").count() == 11
            assert not page.locator("#result-a .unc-fig").is_hidden()  # dropout model: uncertainty shown

            top = "#result-a .stack img.top"
            assert page.eval_on_selector(top, "e => getComputedStyle(e).opacity") == "0.5"
            page.focus("#opacity")
            page.keyboard.press("ArrowLeft")
            page.keyboard.press("ArrowLeft")
            assert page.input_value("#opacity") == "0.4"
            assert page.eval_on_selector(top, "e => getComputedStyle(e).opacity") == "0.4"

            result = page.get_attribute("#result-a", "data-result")
            x, y = 301, 117
            seg = page.locator("#result-a .seg")
            box = seg.bounding_box()
            seg.hover(position={"x": (x + 0.5) * box["width"] / 480, "y": (y + 0.5) * box["height"] / 360})
            hover = "#result-a .hover"
            page.wait_for_function(f"document.querySelector('{hover}').dataset.x === '{x}' && "
                                   f"document.querySelector('{hover}').dataset.y === '{y}'", timeout=20000)
            shown = page.text_content(hover)
            api = get(f"{server['base']}/api/pixel?result={result}&x={x}&y={y}")
            body, labels = predict(server, f"camvid:{stem}", run_id, SAMPLES)
            assert body["id"] == result
            assert page.get_attribute(hover, "data-class") == str(api["class"]) == str(labels[y, x])
            assert f" {api['name']} " in shown and f"score {api['score']:.3f}" in shown
            assert f"ground truth {api['gt_name']}" in shown

            page.select_option("#model-b", hue_id)  # side by side: the second model on the same image
            page.wait_for_selector("#result-b[data-state='done']", timeout=60000)
            box = seg.bounding_box()  # two columns now: the images are smaller
            page.hover("#gt-img", position={"x": 1, "y": 1})  # leave the pixel, to come back to it
            seg.hover(position={"x": (x + 0.5) * box["width"] / 480, "y": (y + 0.5) * box["height"] / 360})
            page.wait_for_function(f"document.querySelector('#result-b .hover').dataset.x === '{x}'", timeout=20000)
            api_b = get(f"{server['base']}/api/pixel?result={page.get_attribute('#result-b', 'data-result')}"
                        f"&x={x}&y={y}")
            assert page.get_attribute("#result-b .hover", "data-class") == str(api_b["class"])
            assert page.locator("#result-b .unc-fig").is_hidden()  # no dropout: no uncertainty
        finally:
            browser.close()
    assert not errors, errors


def test_demo_measure_times_what_the_page_shows(server, camvid_dir, tmp_path):
    """tools.demo_measure drives the same page in Chromium: one time per (sample count, image), medians that are
    the medians of those times (statistics recomputed here), and a full-page JPEG screenshot of the page."""
    out = tmp_path / "measured"
    proc = subprocess.run([sys.executable, "-m", "tools.demo_measure", "--run", str(server["run"]), "--camvid",
                           str(camvid_dir), "--samples", "0,2", "--images", "2", "--out", str(out)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "demo.json").read_text())
    stems = [image.stem for image, _ in camvid.read_list(camvid_dir, "test")[:2]]
    assert result["images"] == stems and sorted(result["seconds"]) == ["0", "2"]
    for n, times in result["seconds"].items():
        assert len(times) == 2 and all(t > 0 for t in times)
        assert result["median_seconds"][n] == pytest.approx(sum(times) / 2)
    shot = cv2.imread(str(out / "demo.jpg"))
    assert shot is not None and shot.shape[1] == 1400 and shot.shape[0] > 1000
    refused = subprocess.run([sys.executable, "-m", "tools.demo_measure", "--run", str(tmp_path), "--out", str(out)],
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not a finished run folder" in refused.stderr.strip().splitlines()[-1]
