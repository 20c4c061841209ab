"""--refine-edges on the command line, in the layout DAVIS checks read: segment_folder.py -i FRAMES
-o OUT --model yolov5s_seg_coco_int8 --classes C --save-masks [--refine-edges] ->
OUT/<frame>_masks/*.png, whose union is the object; cut-outs agree with the saved masks."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from conftest import shared_path
from segkit import cli
from segkit.commands import folder

FRAMES = ("00000", "00030")


@pytest.fixture(scope="module")
def dog_frames(tmp_path_factory, yolo_int8):
    src = shared_path("davis2016", "JPEGImages", "480p", "dog")
    d = tmp_path_factory.mktemp("dog")
    for name in FRAMES:
        shutil.copy(src / f"{name}.jpg", d / f"{name}.jpg")
    return d


def union_of_masks(out, name) -> np.ndarray:
    pngs = sorted((out / f"{name}_masks").glob("*.png"))
    assert pngs, f"no masks for {name}"
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pngs]
    assert all(set(np.unique(m)) <= {0, 255} for m in masks)
    return np.any(np.stack(masks) > 127, axis=0)


def test_save_masks_with_and_without_refine_edges(dog_frames, tmp_path, capsys):
    runs = {}
    for refine in (False, True):
        out = tmp_path / ("refined" if refine else "plain")
        argv = ["-i", str(dog_frames), "-o", str(out), "--model", "yolov5s_seg_coco_int8", "--classes", "dog",
                "--save-masks", "--background", "transparent", "--no-download", "--quiet"]
        code = cli.run_main(folder.main, argv + (["--refine-edges"] if refine else []))
        assert code == 0, capsys.readouterr().err
        runs[refine] = out
    annotations = shared_path("davis2016", "Annotations", "480p", "dog")
    for name in FRAMES:
        gt = cv2.imread(str(annotations / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0
        plain, refined = union_of_masks(runs[False], name), union_of_masks(runs[True], name)
        for m in (plain, refined):
            assert (m & gt).sum() / (m | gt).sum() > 0.8  # the dog, either way
        assert (plain ^ refined).sum() > 100  # the edge moved
        # the cut-out and the saved masks are the same object: alpha >= 0.5 is the mask
        rgba = cv2.imread(str(runs[True] / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert rgba.shape[2] == 4
        assert ((rgba[..., 3] >= 128) != refined).mean() < 0.001
        assert not rgba[..., :3][rgba[..., 3] == 0].any()  # nothing of the photo under alpha 0
    # the plain run's folder, run again with --refine-edges: redone, not skipped as complete
    capsys.readouterr()
    code = cli.run_main(folder.main, ["-i", str(dog_frames), "-o", str(runs[False]), "--model", "yolov5s_seg_coco_int8",
                                      "--classes", "dog", "--save-masks", "--background", "transparent",
                                      "--no-download", "--quiet", "--refine-edges"])
    out = capsys.readouterr()
    assert code == 0 and f"{len(FRAMES)} images done, 0 skipped" in out.err, out
    assert f"{len(FRAMES)} earlier outputs replaced" in out.err
    assert all(np.array_equal(union_of_masks(runs[False], n), union_of_masks(runs[True], n)) for n in FRAMES)
