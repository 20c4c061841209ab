"""A model trained with its own class names (--num-classes 3 --class-names background,pet,border)
works from its folder, its model.keras and its model.tflite, with those names."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import REPO
from fixtures.unet_models import export_tiny_unet

PHOTO = REPO / "images" / "000000519208.jpg"


@pytest.fixture(scope="session")
def pets_export(tmp_path_factory):
    """What train_person_unet.py writes for the README's 3-class example (Keras + TFLite)."""
    return export_tiny_unet(tmp_path_factory.mktemp("own") / "pets_trimap", num_classes=3,
                            classes=("background", "pet", "border"), tflite=True)


@pytest.mark.parametrize("which", ["folder", "model.keras", "model.tflite"])
def test_loads_with_its_own_class_names(pets_export, which):
    from segkit.models import load_segmenter

    path = pets_export if which == "folder" else pets_export / which
    seg = load_segmenter(None, str(path))
    r = seg.segment_one(cv2.imread(str(PHOTO))[..., ::-1].copy())
    assert r.prob_class_ids == (1, 2)
    assert r.label_names[1] == "pet" and r.label_names[2] == "border"
    assert r.probs.shape[2] == 2


def test_keras_and_tflite_agree(pets_export):
    from segkit.models import load_segmenter

    image = cv2.imread(str(PHOTO))[..., ::-1].copy()
    keras_probs = load_segmenter(None, str(pets_export / "model.keras")).segment_one(image).probs
    lite_probs = load_segmenter(None, str(pets_export / "model.tflite")).segment_one(image).probs
    assert np.abs(keras_probs - lite_probs).max() < 1e-3


@pytest.mark.parametrize("which", ["folder", "model.tflite"])
def test_segment_image_with_own_class_filter(pets_export, which, tmp_path, capsys):
    import importlib

    from segkit import cli

    image = importlib.import_module("segkit.commands.image")
    path = pets_export if which == "folder" else pets_export / which
    out = tmp_path / "out"
    rc = cli.run_main(image.main, ["-i", str(PHOTO), "-o", str(out), "--model-path", str(path),
                                   "--classes", "pet", "--save-masks", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert len(list(out.glob("000000519208.*"))) == 1
    # a name the model does not know is a usage error naming its classes' closest match
    rc = cli.run_main(image.main, ["-i", str(PHOTO), "-o", str(out), "--model-path", str(path),
                                   "--classes", "pets", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown class name 'pets'" in err and "'pet'" in err
