"""The Python API as a user calls it: segkit.load_model(...)(image) -> Segmentation, and what a
Segmentation draws and writes (.plot, .to_coco, .masks_png, .to_yolo_txt)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

import segkit
from conftest import REPO
from segkit.labels import COCO_CATEGORIES
from segkit.segmentation import Segmentation
from segkit.io.sources import read_image

IMAGE = REPO / "images" / "000000519208.jpg"  # a person on a tennis court


@pytest.fixture(scope="module")
def model():
    with segkit.load_model() as m:  # the bundled default person model
        yield m


@pytest.fixture(scope="module")
def image():
    return read_image(IMAGE)


@pytest.fixture(scope="module")
def seg(model, image):
    return model(image)


def test_import_load_and_segment_never_import_tensorflow():
    code = ("import sys, json, segkit\n"
            "m = segkit.load_model('person_selfie_coco')\n"
            f"seg = m({str(IMAGE)!r})\n"
            "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'fg': float(seg.foreground().mean()),"
            " 'shape': [seg.height, seg.width]}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tf"] is False
    assert out["shape"] == list(read_image(IMAGE).shape[:2])
    assert 0.05 < out["fg"] < 0.6  # the player, not the whole court


def test_path_and_array_give_the_same_result(model, image, seg):
    from_path = model(str(IMAGE))
    assert np.array_equal(from_path.foreground(), seg.foreground())
    both = model([image, IMAGE])
    assert len(both) == 2 and np.array_equal(both[1].foreground(), seg.foreground())


def test_load_model_takes_a_path(seg, image):
    path = REPO / "model_zoo" / "person_selfie_coco"
    for m in (segkit.load_model(path=path), segkit.load_model(str(path))):
        with m:
            assert m.name == "person_selfie_coco"
            assert np.array_equal(m(image).foreground(), seg.foreground())


def test_filters_apply_to_every_result(image, seg):
    with segkit.load_model(classes="person") as m:
        assert np.array_equal(m(image).foreground(), seg.foreground())
    with segkit.load_model(threshold=0.95) as m:
        strict = m(image).foreground()
    assert strict.sum() < seg.foreground().sum() and not (strict & ~seg.foreground()).any()
    with pytest.raises(ValueError, match="unknown class name 'dgo'"):
        segkit.load_model(classes="dgo")


def test_bad_image_is_refused(model):
    with pytest.raises(ValueError, match="RGB uint8"):
        model(np.zeros((8, 8), np.float32))


# --------------------------------------------------------------------------- issue #24 part 5
@pytest.mark.parametrize("thing", [None, 42, np.uint8(3), 2.5, {"image": 1}, object()])
def test_what_is_not_an_image_is_a_type_error_naming_what_is_accepted(model, thing):
    with pytest.raises(TypeError, match=r"takes an image file path .* a PIL\.Image, encoded image bytes "
                                        r"\(JPEG, PNG\.\.\.\), or a list of those; got "):
        model(thing)
    with pytest.raises(TypeError, match="or a list of those"):
        model([IMAGE, thing])


def test_pil_images_and_encoded_bytes_give_the_array_result(model, image, seg):
    from PIL import Image

    assert np.array_equal(model(Image.fromarray(image)).foreground(), seg.foreground())
    assert np.array_equal(model(Image.fromarray(image).convert("RGBA")).foreground(), seg.foreground())
    png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert np.array_equal(model(png).foreground(), seg.foreground())
    jpeg = IMAGE.read_bytes()
    both = model([jpeg, bytearray(png)])
    assert np.array_equal(both[0].foreground(), model(IMAGE).foreground())
    assert np.array_equal(both[1].foreground(), seg.foreground())
    with pytest.raises(ValueError, match="image bytes: "):
        model(b"not an image")


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 5, 3), (5, 0, 3)])
def test_empty_arrays_are_a_value_error(model, shape):
    with pytest.raises(ValueError, match="empty image"):
        model(np.zeros(shape, np.uint8))


def test_the_yolo_letterbox_refuses_an_empty_image_instead_of_dividing_by_zero():
    from segkit.models.yolo_seg import letterbox

    with pytest.raises(ValueError, match="empty image"):
        letterbox(np.zeros((0, 0, 3), np.uint8), 64)


@pytest.mark.parametrize("kwargs, cli_flags", [
    ({"threshold": 2}, ["--threshold", "2"]),
    ({"threshold": float("nan")}, ["--threshold", "nan"]),
    ({"max_instances": -3}, ["--max-instances", "-3"]),
    ({"max_instances": 0}, ["--max-instances", "0"]),
    ({"classes": "dog"}, ["--classes", "dog"]),
    ({"classes": ""}, ["--classes", ""]),
    ({"min_area": -1}, ["--min-area", "-1"]),
])
def test_load_model_checks_options_as_the_command_line_does_in_its_words(kwargs, cli_flags, tmp_path):
    with pytest.raises(ValueError) as refused:
        segkit.load_model(**kwargs)
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", str(IMAGE), "-o",
                        str(tmp_path), *cli_flags], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO / "lib")})
    assert r.returncode == 2, r.stderr
    cli_line = r.stderr.strip().removeprefix("segkit: error: ")
    # argparse types add "argument --x: invalid parse value: '2'" around the same words
    assert str(refused.value) in cli_line or str(refused.value).split(": ", 1)[1] in cli_line, \
        (str(refused.value), cli_line)


def test_one_model_called_from_8_threads_at_once(model, image, seg):
    from concurrent.futures import ThreadPoolExecutor

    small = cv2.resize(image, (160, 120))
    expected = model(small).foreground()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: model(image if i % 4 == 0 else small), range(32)))
    for i, r in enumerate(results):
        assert np.array_equal(r.foreground(), seg.foreground() if i % 4 == 0 else expected)


def test_plot_draws_over_the_segmented_pixels_only(seg, image):
    out = seg.plot(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    changed = np.any(out != image, axis=2)
    fg = seg.foreground()
    assert changed[fg].mean() > 0.9  # tinted
    near = cv2.dilate(fg.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    assert changed[~near].mean() < 0.01  # the rest untouched (but for the label)
    assert np.array_equal(seg.plot(image, labels=False)[~near], image[~near])  # the label was the rest


def test_to_coco_loads_with_pycocotools(seg, image):
    from pycocotools.coco import COCO

    gt = COCO()
    h, w = image.shape[:2]
    gt.dataset = {"images": [{"id": 7, "height": h, "width": w}],
                  "categories": [{"id": c, "name": n} for c, n in COCO_CATEGORIES.items()],
                  "annotations": []}
    gt.createIndex()
    res = gt.loadRes(seg.to_coco(7))
    anns = res.loadAnns(res.getAnnIds(imgIds=[7]))
    assert [a["category_id"] for a in anns] == [1]
    assert np.array_equal(res.annToMask(anns[0]).astype(bool), seg.foreground())
    assert seg.to_coco_results(7) == seg.to_coco(7)  # the old name still works


def test_masks_png_decode_to_the_masks(seg):
    pngs = seg.masks_png()
    assert [c for c, _ in pngs] == [1]
    m = cv2.imdecode(np.frombuffer(pngs[0][1], np.uint8), cv2.IMREAD_UNCHANGED)
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}
    assert np.array_equal(m == 255, seg.foreground())


def _parse_yolo(text: str, h: int, w: int):
    """(class, polygon in pixels, trailing conf or None) per line; coords checked to be 0..1."""
    out = []
    for line in text.splitlines():
        v = line.split()
        cls, rest = int(v[0]), np.array(v[1:], float)
        conf = None
        if len(rest) % 2:
            conf, rest = rest[-1], rest[:-1]
        pts = rest.reshape(-1, 2)
        assert len(pts) >= 3 and (pts >= 0).all() and (pts <= 1).all()
        out.append((cls, np.round(pts * (w, h)).astype(np.int32), conf))
    return out


def _fill(poly, h, w):
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [poly], 1)
    return m.astype(bool)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_to_yolo_txt_polygons_rasterize_back_to_the_masks():
    h, w = 120, 200
    masks = np.zeros((3, h, w), np.uint8)
    cv2.ellipse(masks[0], (60, 50), (40, 25), 30, 0, 360, 1, -1)
    cv2.circle(masks[1], (150, 80), 30, 1, -1)
    cv2.circle(masks[1], (20, 110), 4, 1, -1)  # a speck: the largest contour is the one written
    masks = masks.astype(bool)  # masks[2] stays empty: no line
    seg = Segmentation(h, w, masks=masks, boxes=np.zeros((3, 4), np.float32),
                       class_ids=np.array([18, 90, 1], np.int32), scores=np.array([0.9, 0.75, 0.6], np.float32))
    lines = _parse_yolo(seg.to_yolo_txt(), h, w)
    assert [c for c, _, _ in lines] == [16, 79]  # dog, toothbrush: the 0-based index of 80 COCO classes
    assert _iou(_fill(lines[0][1], h, w), masks[0]) >= 0.9
    big = np.zeros((h, w), np.uint8)
    cv2.circle(big, (150, 80), 30, 1, -1)
    assert _iou(_fill(lines[1][1], h, w), big.astype(bool)) >= 0.9
    confs = [c for _, _, c in _parse_yolo(seg.to_yolo_txt(with_conf=True), h, w)]
    assert confs == pytest.approx([0.9, 0.75], abs=1e-5)
    # a model with its own class list writes its own ids
    own = Segmentation(h, w, masks=masks[:1], boxes=np.zeros((1, 4), np.float32), class_ids=np.array([2], np.int32),
                       scores=np.array([0.8], np.float32), label_names={0: "background", 1: "pet", 2: "border"})
    assert own.to_yolo_txt().split()[0] == "2"
    assert Segmentation(h, w).to_yolo_txt() == ""


def test_to_yolo_txt_of_the_person_model(seg, image):
    h, w = image.shape[:2]
    (cls, poly, _), = _parse_yolo(seg.to_yolo_txt(), h, w)
    assert cls == 0  # person
    n, labels, stats, _ = cv2.connectedComponentsWithStats(seg.foreground().astype(np.uint8), connectivity=8)
    largest = labels == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])
    assert _iou(_fill(poly, h, w), largest) >= 0.9


def test_readme_python_api_block_runs_as_written(tmp_path):
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)
    assert blocks and "segkit.load_model" in blocks[0]
    r = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_run_puts_files_through_the_scripts_run_loop_into_sinks(model, tmp_path):
    from segkit.io.sinks import Call, Picture, Renderer

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(IMAGE.read_bytes())
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    got = {}
    stats = model.run(src, [Picture(tmp_path / "out", Renderer()), Call(lambda f, s: got.update({f.name: s}))])
    assert (stats.done, stats.failed) == (1, 1) and stats.exit_code() == 3
    assert (tmp_path / "out" / "a.jpg").is_file()
    np.testing.assert_array_equal(got["a"].foreground(), model(IMAGE).foreground())  # same as a call
