"""segkit.models.blob_filter: each blob's features, the fitted keep rule, and its fitting script."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path
from segkit.errors import SegkitError
from segkit.models.blob_filter import FEATURES, BlobFilter, blob_features, keep_scored


def maps():
    probs = np.zeros((20, 40), np.float32)
    probs[2:6, 2:10] = 0.9           # blob 1: 4 x 8 = 32 cells, a full box
    probs[3, 4] = 1.0                # ... its peak
    probs[10:20, 30:32] = 0.6        # blob 2: 10 x 2 = 20 cells
    probs[0, 39] = 0.4               # below the threshold: no blob
    gate = np.zeros_like(probs)
    gate[2:4, 2:10] = 0.8            # half of blob 1 confirmed
    gate[19, 31] = 0.3               # blob 2: gate weak, never >= 0.5
    return probs, gate


def test_blob_features_describe_each_blob():
    probs, gate = maps()
    labels, x = blob_features(probs, gate)
    assert x.shape == (2, len(FEATURES)) and labels.max() == 2
    f = [dict(zip(FEATURES, row)) for row in x]
    first, second = (f[0], f[1]) if labels[2, 2] == 1 else (f[1], f[0])
    assert first["log_area"] == pytest.approx(np.log(32 / 800))
    assert first["main_mean"] == pytest.approx((31 * 0.9 + 1.0) / 32)
    assert first["main_max"] == pytest.approx(1.0)
    assert first["gate_cover"] == pytest.approx(0.5) and first["gate_max"] == pytest.approx(0.8)
    assert first["fill"] == pytest.approx(1.0) and first["height"] == pytest.approx(4 / 20)
    assert second["gate_cover"] == 0 and second["gate_max"] == pytest.approx(0.3)
    assert second["center_y"] == pytest.approx(14.5 / 20) and second["width"] == pytest.approx(2 / 40)
    assert first["image_main_fg"] == second["image_main_fg"] == pytest.approx(52 / 800)
    assert first["log_blobs"] == pytest.approx(np.log1p(2))
    assert blob_features(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))[1].shape == (0, len(FEATURES))


def on_gate_cover(threshold=0.5) -> BlobFilter:
    """A filter that keeps blobs the gate covers (by hand: one coefficient)."""
    coef = [0.0] * len(FEATURES)
    coef[FEATURES.index("gate_cover")] = 10.0
    return BlobFilter(mean=[0.0] * len(FEATURES), scale=[1.0] * len(FEATURES), coef=coef,
                      intercept=-1.0, threshold=threshold)


def test_keep_scored_drops_the_blobs_the_filter_rejects_whole():
    probs, gate = maps()
    out = keep_scored(probs[..., None], gate[..., None], on_gate_cover())
    assert np.array_equal(out[2:6, 2:10, 0], probs[2:6, 2:10])      # kept whole
    assert out[10:20, 30:32].max() == 0                              # dropped whole
    assert out[0, 39, 0] == pytest.approx(0.4)                       # not a blob: untouched
    assert probs[10, 30] == pytest.approx(0.6)                       # input untouched
    everything = keep_scored(probs[..., None], gate[..., None], on_gate_cover(threshold=0.0))
    np.testing.assert_array_equal(everything[..., 0], probs)


def test_filter_files_round_trip_and_bad_ones_name_the_file(tmp_path):
    path = tmp_path / "blob_filter.json"
    on_gate_cover().save(path)
    again = BlobFilter.load(path)
    x = blob_features(*maps())[1]
    np.testing.assert_array_equal(again.keep(x), on_gate_cover().keep(x))
    data = json.loads(path.read_text())
    data["features"] = data["features"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(SegkitError, match="blob_filter.json: blob filter made for another segkit: features"):
        BlobFilter.load(path)
    path.write_text("{")
    with pytest.raises(SegkitError, match="blob_filter.json: not a blob filter"):
        BlobFilter.load(path)


@pytest.mark.shared
def test_fit_script_learns_a_filter_the_model_then_uses(tmp_path, repo):
    """scripts/fit_blob_filter.py on 12 real photos (coco_extra: people, and photos without)
    writes a filter that a copy of the bundled model loads once its zoo.yaml names it."""
    ann = json.loads(shared_path("coco_extra", "annotations", "instances.json").read_text())
    person = {a["image_id"] for a in ann["annotations"] if a["category_id"] == 1}
    ids = [i["id"] for i in ann["images"] if i["id"] in person][:8] + \
          [i["id"] for i in ann["images"] if i["id"] not in person][:4]
    small = dict(ann, images=[i for i in ann["images"] if i["id"] in ids],
                 annotations=[a for a in ann["annotations"] if a["image_id"] in ids])
    (tmp_path / "small.json").write_text(json.dumps(small))
    model = tmp_path / "model"
    model.mkdir()
    for f in ("model.tflite", "gate.tflite", "zoo.yaml"):
        (model / f).write_bytes((repo / "model_zoo" / "person_selfie_coco" / f).read_bytes())
    zoo_yaml = model / "zoo.yaml"
    zoo_yaml.write_text(zoo_yaml.read_text().replace("file: person_selfie_coco/model.tflite", "file: model.tflite"))
    out = subprocess.run([sys.executable, str(repo / "scripts" / "fit_blob_filter.py"), "--model-path", str(model),
                          "--annotations", str(tmp_path / "small.json"),
                          "--images", str(shared_path("coco_extra", "images")), "-o", str(model / "blob_filter.json"),
                          "--check-annotations", str(tmp_path / "small.json"),
                          "--check-images", str(shared_path("coco_extra", "images")), "--bootstrap", "3"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "blobs" in out.stdout and "person pixels kept" in out.stdout
    # the check set's pooled IoU and medium recall, every blob / gate-touched / filtered, and 3
    # refits' spread
    figures = r"([\d.]+) \(medium recall ([\d.]+)\)"
    check = re.search(rf"every blob {figures}, blobs the gate touches {figures}, this filter {figures}", out.stdout)
    assert check, out.stdout
    iou_all, medium_all, iou_touched, medium_touched, _, _ = (float(v) for v in check.groups())
    assert 0 < iou_all <= 1 and 0 < iou_touched <= 1
    assert 0 <= medium_touched <= medium_all <= 1  # the gate keeps a subset of the blobs
    assert re.search(r"3 refits on resampled fitting photos: [\d.]+-[\d.]+ \(median [\d.]+; \d of 3", out.stdout)
    fitted = BlobFilter.load(model / "blob_filter.json")
    assert "small.json" in fitted.fitted_on and np.isfinite(fitted.coef).all()

    from segkit.models import load_segmenter
    assert load_segmenter(None, str(model)).blob_filter is None  # the bundled model names none
    zoo_yaml.write_text(zoo_yaml.read_text() + "    blob_filter_file: blob_filter.json\n")
    loaded = load_segmenter(None, str(model))
    assert loaded.blob_filter is not None and loaded.blob_filter.coef == fitted.coef


def test_medium_weight_keeps_blobs_that_hold_medium_people(repo, monkeypatch):
    """Blobs mostly made of background lose pooled IoU, so the plain fit drops them; when their
    person pixels are medium people and ``medium_weight`` counts those pixels 10x, it keeps them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fit_blob_filter", repo / "scripts" / "fit_blob_filter.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fit_blob_filter", script)  # its dataclass looks itself up there
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    kinds = np.repeat([0, 1, 2], 40)  # a person, a blob around a medium person, background
    x = rng.normal(size=(len(kinds), len(FEATURES))) * 0.1
    x[:, 0] += kinds  # one feature tells the kinds apart
    tp = np.choose(kinds, [100.0, 10.0, 0.0])
    fp = np.choose(kinds, [10.0, 100.0, 100.0])
    medium = np.choose(kinds, [0.0, 10.0, 0.0])
    blobs = script.Blobs(x, tp, fp, medium, np.arange(len(kinds)), tp.sum(), medium.sum())
    plain = script.fit(blobs, ref_iou=0.5, C=1.0).keep(x)
    weighted = script.fit(blobs, ref_iou=0.5, C=1.0, medium_weight=10).keep(x)
    assert plain[kinds == 0].all() and not plain[kinds == 1].any() and not plain[kinds == 2].any()
    assert weighted[kinds == 0].all() and weighted[kinds == 1].all() and not weighted[kinds == 2].any()
    assert blobs.medium_recall(weighted) == 1.0 and blobs.medium_recall(plain) == 0.0
