"""segkit.evaluation and bin/evaluate.py on the shared COCO val subset and the bundled person model."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from conftest import REPO, shared_path
from segkit.errors import SegkitError
from segkit.evaluation.ap import coco_ap
from segkit.evaluation.coco import coco_class_truth, gt_as_results, images_with_classes, load_coco
from segkit.evaluation.pixels import PersonFigures, PixelCounts, semantic_coco_results
from segkit.evaluation.predict import predict_coco, semantic_coco
from segkit.evaluation.report import format_figures, format_table
from segkit.flow import Filter

MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"


@pytest.fixture(scope="module")
def gt(coco_val):
    return load_coco(coco_val[0])


@pytest.fixture(scope="module")
def selfie():
    from segkit.models import load_segmenter
    return load_segmenter(None, str(MODEL))


def test_ground_truth_as_results_scores_ap_one(gt):
    results = gt_as_results(gt)
    m = coco_ap(gt, results, per_class=True)
    for iou_type in ("bbox", "segm"):
        assert m[iou_type]["AP"] == pytest.approx(1.0)
        assert m[iou_type]["AP50"] == pytest.approx(1.0)
        assert m[iou_type]["per_class"]["person"] == pytest.approx(1.0)
        assert len(m[iou_type]["per_class"]) > 20
    # and it is not a constant: shifting every box by half its width ruins box AP
    shifted = [{**r, "bbox": [r["bbox"][0] + r["bbox"][2] / 2, *r["bbox"][1:]]} for r in results]
    m2 = coco_ap(gt, shifted, iou_types=("bbox",))
    assert m2["bbox"]["AP"] < 0.5 and m2["bbox"]["AP50"] < 0.5
    table = format_table(m)
    assert "mask AP" in table and "100.0" in table


def test_results_with_unknown_image_ids_are_refused(gt):
    r = gt_as_results(gt)[:1]
    r[0] = {**r[0], "image_id": "holiday_photo"}
    with pytest.raises(SegkitError, match="not in the annotation file"):
        coco_ap(gt, r)


def test_pixel_counts_pooled_and_per_image():
    c = PixelCounts((1,))
    t = np.zeros((1, 4, 4), bool)
    t[0, :2] = True                                # 8 truth pixels
    p = np.zeros_like(t)
    p[0, :1] = True                                # 4 predicted, all right
    c.add(p, t)                                    # IoU 4/8
    c.add(np.ones_like(t), np.ones_like(t))        # IoU 16/16
    c.add(np.zeros_like(t), np.zeros_like(t))      # nothing anywhere: not in per-image means
    s = c.scores()["person"]
    assert (s["tp"], s["fp"], s["fn"]) == (20, 0, 4)
    assert s["iou"] == pytest.approx(20 / 24)
    assert s["precision"] == pytest.approx(1.0) and s["recall"] == pytest.approx(20 / 24)
    assert s["mean_iou"] == pytest.approx((0.5 + 1.0) / 2)
    assert s["images"] == 2


def test_selfie_person_iou_on_coco_val(gt, coco_val, selfie):
    img_ids = sorted(gt.getImgIds())
    with_people = images_with_classes(gt, img_ids, (1,))
    counts = semantic_coco(selfie, gt, coco_val[1], with_people, (1,), threshold=0.5)
    s = counts.scores()["person"]
    assert counts.images == len(with_people) == 61
    assert 0.44 <= s["iou"] <= 0.54, s
    # Over every image, false positives on people-free images lower IoU and precision.
    allc = semantic_coco(selfie, gt, coco_val[1], img_ids, (1,), threshold=0.5).scores()["person"]
    assert allc["iou"] < s["iou"] and allc["precision"] < s["precision"]
    assert allc["recall"] == pytest.approx(s["recall"])  # same person pixels either way


def test_results_file_scores_like_the_model(gt, coco_val, selfie):
    ids = images_with_classes(gt, sorted(gt.getImgIds()), (1,))[:8]
    results = predict_coco(selfie, gt, coco_val[1], ids, Filter({1}, 0.5))
    from_file = semantic_coco_results(gt, results, ids, (1,), threshold=0.5).scores()["person"]
    direct = semantic_coco(selfie, gt, coco_val[1], ids, (1,), threshold=0.5).scores()["person"]
    assert from_file["tp"] == direct["tp"] and from_file["fp"] == direct["fp"]


def test_evaluate_script_on_mask_folder(tmp_path, capsys):
    images, masks = shared_path("person", "images"), shared_path("person", "masks")
    mod = importlib.import_module("segkit.commands.evaluate")
    from segkit import cli

    out = tmp_path / "metrics.json"
    rc = cli.run_main(mod.main, ["--images", str(images), "--masks", str(masks), "--limit", "6",
                                 "--model-path", str(MODEL), "--quiet", "-o", str(out)])
    assert rc == 0
    m = json.loads(out.read_text())["semantic"]["person"]
    assert 0.5 < m["iou"] <= 1.0 and m["images"] >= 1
    assert "person" in capsys.readouterr().out
    # nonsense arguments: a one-line error, exit code 2
    rc = cli.run_main(mod.main, ["--results", "r.json", "--masks", str(masks)])
    assert rc == 2


def test_shipped_default_person_model_beats_the_selfie_model_on_coco_val(gt, coco_val, selfie):
    """The committed default (MediaPipe's network fine-tuned here on COCO persons) against the
    network it started from, same protocol: pooled person IoU over the val images with people."""
    from segkit import zoo
    from segkit.models import load_segmenter

    default = zoo.load_registry().default
    assert default != "selfie_segmentation"
    shipped = load_segmenter(default, download=False)
    assert shipped.family == "tflite"  # LiteRT: no TensorFlow import at run time
    with_people = images_with_classes(gt, sorted(gt.getImgIds()), (1,))
    ours = semantic_coco(shipped, gt, coco_val[1], with_people, (1,), threshold=0.5)
    base = semantic_coco(selfie, gt, coco_val[1], with_people, (1,), threshold=0.5)
    ours, base = ours.scores()["person"], base.scores()["person"]
    assert ours["iou"] >= 0.60, ours
    assert ours["iou"] > base["iou"] + 0.08
    assert ours["precision"] > base["precision"] and ours["recall"] > base["recall"]


def _tiny_coco():
    """Two 10x10 images: one with a 2x2 and a 6x6 person, one without people."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    def box(img, ann_id, x, y, s, crowd=0):
        poly = [x, y, x + s, y, x + s, y + s, x, y + s]
        return {"id": ann_id, "image_id": img, "category_id": 1, "iscrowd": crowd,
                "segmentation": [poly], "area": s * s, "bbox": [x, y, s, s]}

    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": 10, "height": 10, "file_name": "1.jpg"},
                               {"id": 2, "width": 10, "height": 10, "file_name": "2.jpg"}],
                    "annotations": [box(1, 1, 0, 0, 2), box(1, 2, 4, 4, 6)],
                    "categories": [{"id": 1, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_person_figures_split_false_positives_and_size_recall():
    gt = _tiny_coco()
    f = PersonFigures(gt, (1,))
    truth1 = coco_class_truth(gt, 1, (1,))
    assert truth1.sum() == 4 + 36
    pred1 = np.zeros_like(truth1)
    pred1[0, 4:10, 4:10] = True                     # the 6x6 person found, the 2x2 one missed
    pred1[0, 0, 9] = True                           # one false positive pixel
    f.add(1, pred1, truth1)
    pred2 = np.zeros((1, 10, 10), bool)
    pred2[0, :5] = True                             # half of the person-free image painted
    f.add(2, pred2, np.zeros_like(pred2))
    s = f.scores()["person"]
    assert s["iou_with_class"] == pytest.approx(36 / 41)
    assert s["iou_all"] == pytest.approx(36 / (41 + 50))       # the 50 false pixels count here only
    assert s["fp_share_without_class"] == pytest.approx(0.5)
    r = s["recall_by_size"]
    assert r["small"] == {"recall": pytest.approx(36 / 40), "instances": 2}  # both < 32² pixels
    assert r["medium"] == r["large"] == {"recall": None, "instances": 0}
    assert (s["images_with_class"], s["images_without_class"]) == (1, 1)
    assert "50.0" in format_figures(f.scores())


def test_evaluate_script_reports_the_three_figures_on_coco_val(tmp_path, coco_val):
    from segkit import cli
    from segkit.commands.evaluate import main

    out = tmp_path / "metrics.json"
    rc = cli.run_main(main, ["--annotations", str(coco_val[0]), "--images", str(coco_val[1]),
                                 "--model-path", str(MODEL), "--quiet", "-o", str(out)])
    assert rc == 0
    m = json.loads(out.read_text())
    f, sem = m["figures"]["person"], m["semantic"]["person"]
    assert f["iou_all"] == pytest.approx(sem["iou"])          # every image scored: same pooled IoU
    assert f["iou_with_class"] > f["iou_all"]                 # selfie paints person-free photos
    assert (f["images_with_class"], f["images_without_class"]) == (61, 67)
    assert 0.05 < f["fp_share_without_class"] < 0.25
    r = f["recall_by_size"]
    assert r["small"]["recall"] < r["medium"]["recall"] < r["large"]["recall"]
    assert sum(b["instances"] for b in r.values()) > 200


def test_shipped_person_model_holds_its_three_figures_on_coco_val(gt, coco_val):
    """The committed default at its measured figures (bin/evaluate.py, COCO val2017, 128 images,
    original size, threshold 0.5): (1) 0.521, (2) 0.624, false positives 2.75 %, 32²-96² recall
    0.495 — against 0.374 / 0.618 / 9.3 % / 0.453 before issue #15. Three of its four targets
    (0.50, 0.62, 3 %) are held here; the fourth (medium recall 0.60) is NOT reached; see the
    README's recipes table."""
    from segkit.models import load_segmenter

    shipped = load_segmenter("person_selfie_coco", download=False)
    assert shipped.gate is not None and shipped.in_h == 320  # the confirming second network
    figures = PersonFigures(gt, (1,))
    semantic_coco(shipped, gt, coco_val[1], sorted(gt.getImgIds()), (1,), 0.5, figures=figures)
    f = figures.scores()["person"]
    assert f["iou_all"] >= 0.50 and f["iou_with_class"] >= 0.62, f
    assert f["fp_share_without_class"] <= 0.03, f
    assert f["recall_by_size"]["medium"]["recall"] >= 0.48, f
    assert f["recall_by_size"]["large"]["recall"] >= 0.80, f
