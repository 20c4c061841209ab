"""evaluate.py is honest about what it scores: only the images the results / model covered (and
says how many), IoU for a person model's results without being told, per-class rows only for
classes that occur."""
from __future__ import annotations

import importlib
import json

import pytest

from segkit import cli


def _evaluate(*args):
    return cli.run_main(importlib.import_module("segkit.commands.evaluate").main, [*map(str, args)])


@pytest.fixture(scope="module")
def two_images(coco_val, tmp_path_factory):
    """Two COCO val images with people, segmented by segment_folder.py with the default person
    model into results.json (+ its per-image records)."""
    from segkit.evaluation.coco import load_coco

    ann, images = coco_val
    gt = load_coco(ann)
    def person_share(iid):
        im = gt.imgs[iid]
        return sum(a["area"] for a in gt.imgToAnns[iid] if a["category_id"] == 1) / (im["height"] * im["width"])
    ids = sorted(gt.getImgIds(catIds=[1]), key=person_share)[-2:]  # people large enough to find
    tmp = tmp_path_factory.mktemp("scope")
    src = tmp / "in"
    src.mkdir()
    for iid in ids:
        name = gt.imgs[iid]["file_name"]
        (src / name).symlink_to(images / name)
    out = tmp / "out"
    folder = importlib.import_module("segkit.commands.folder")
    assert cli.run_main(folder.main, ["-i", str(src), "-o", str(out), "--json", "--no-visual",
                                      "--coco-annotations", str(ann), "--quiet"]) == 0
    return gt, ids, src, out / "results.json"


def test_person_results_get_iou_over_the_covered_images_only(two_images, coco_val, capsys, tmp_path):
    gt, ids, _, results = two_images
    assert all(r.get("semantic") for r in json.loads(results.read_text()))
    metrics = tmp_path / "m.json"
    assert _evaluate("--annotations", coco_val[0], "--results", results, "-o", metrics) == 0
    out = capsys.readouterr().out
    assert f"scored 2 of {len(gt.getImgIds())} annotated images" in out
    m = json.loads(metrics.read_text())
    assert "bbox" not in m and m["semantic"]["person"]["images"] == 2
    assert m["images_scored"] == 2
    assert m["semantic"]["person"]["iou"] > 0.3  # a real person model on people, not a 0.0


def test_instance_scoring_per_class_lists_only_classes_that_occur(two_images, coco_val, capsys, tmp_path):
    gt, ids, _, results = two_images
    metrics = tmp_path / "m.json"
    assert _evaluate("--annotations", coco_val[0], "--results", results, "--instance", "--per-class",
                     "-o", metrics) == 0
    m = json.loads(metrics.read_text())
    occurring = {gt.cats[a["category_id"]]["name"] for i in ids for a in gt.imgToAnns[i]}
    assert set(m["segm"]["per_class"]) == occurring and "person" in occurring
    assert len(occurring) < 20  # not the 80 rows of the whole annotation file
    assert m["segm"]["per_class"]["person"] > 0.0


def test_model_on_a_partial_image_folder_scores_what_it_holds(two_images, coco_val, capsys, tmp_path):
    gt, ids, src, _ = two_images
    metrics = tmp_path / "m.json"
    assert _evaluate("--annotations", coco_val[0], "--images", src, "--quiet", "-o", metrics) == 0
    m = json.loads(metrics.read_text())
    assert m["images_scored"] == 2 and m["semantic"]["person"]["images"] == 2
    assert "scored 2 of" in capsys.readouterr().out


def test_results_for_other_images_are_an_error(coco_val, tmp_path, capsys):
    bogus = tmp_path / "results.json"
    bogus.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.9}]))
    assert _evaluate("--annotations", coco_val[0], "--results", bogus) == 1
    err = capsys.readouterr().err
    assert err.startswith("segkit: error:") and "covers none of the" in err


def test_the_library_call_is_the_whole_command(two_images, coco_val, tmp_path):
    """segkit.evaluation.run.evaluate gives the metrics the command writes, without its flags."""
    from segkit.errors import UsageError
    from segkit.evaluation.run import Options, evaluate

    gt, ids, _, results = two_images
    report = evaluate(Options(annotations=str(coco_val[0]), results=str(results), instance=True))
    assert report.metrics["images_scored"] == 2 and not report.failed
    assert report.metrics["segm"]["AP"] > 0.0
    metrics = tmp_path / "m.json"
    assert _evaluate("--annotations", coco_val[0], "--results", results, "--instance", "-o", metrics) == 0
    assert json.loads(metrics.read_text()) == json.loads(json.dumps(report.metrics))
    with pytest.raises(UsageError, match="not both"):  # for a model as for a results file
        Options(annotations=str(coco_val[0]), images=str(coco_val[1]), semantic=True, instance=True)
