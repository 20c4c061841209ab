"""Family detection from files on disk and the zoo/path loader."""
import shutil

import pytest

from segkit.errors import SegkitError
from segkit.models import detect_family, load_segmenter


def test_detects_each_family_from_its_layout(tf2_model_dir, tf1_graph_file, repo, tmp_path):
    # TF2 OD API archives extract to NAME/{saved_model/, pipeline.config, checkpoint/}
    export = tmp_path / "mask_rcnn_export"
    shutil.copytree(tf2_model_dir, export / "saved_model")
    assert detect_family(export) == ("od_api_tf2", export / "saved_model")
    assert detect_family(tf2_model_dir) == ("od_api_tf2", tf2_model_dir)
    assert detect_family(tf2_model_dir / "saved_model.pb")[0] == "od_api_tf2"
    assert detect_family(tf1_graph_file) == ("od_api_tf1", tf1_graph_file)
    assert detect_family(tf1_graph_file.parent) == ("od_api_tf1", tf1_graph_file)
    tfl = repo / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"
    assert detect_family(tfl) == ("tflite", tfl)


@pytest.mark.parametrize("make,problem", [
    (lambda d: d / "nothing", "no such file"),
    (lambda d: d, "no known checkpoint"),
])
def test_unknown_layouts_are_clear_errors(tmp_path, make, problem):
    with pytest.raises(SegkitError, match=problem):
        detect_family(make(tmp_path))


def test_load_by_path_returns_the_right_adapter(tf2_model_dir, tf1_graph_file):
    assert load_segmenter(model_path=str(tf2_model_dir)).family == "od_api_tf2"
    assert load_segmenter(model_path=str(tf1_graph_file)).family == "od_api_tf1"


def test_default_zoo_model_is_the_bundled_person_model():
    seg = load_segmenter(download=False)
    assert seg.family == "tflite" and seg.semantic and seg.name == "person_selfie_coco"


def test_model_garden_export_is_told_apart_from_the_od_api(garden_export):
    family, path = detect_family(garden_export)
    assert family == "garden" and path == garden_export / "saved_model"


def test_family_registry_builds_registered_families_only(monkeypatch, tmp_path):
    import segkit.models as models

    with pytest.raises(SegkitError, match=r"unknown model family 'onnx' \(one of od_api_tf2, "):
        models.build_segmenter("onnx", tmp_path / "m.onnx")
    monkeypatch.setattr(models, "_BUILDERS", dict(models._BUILDERS))  # registering is global
    calls = []
    models.register_family("fake")(lambda path, name, spec, progress: calls.append((path, name)) or "seg")
    assert models.build_segmenter("fake", tmp_path / "m", name="n") == "seg"
    assert calls == [(tmp_path / "m", "n")]
