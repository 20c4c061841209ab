"""--save-txt / --save-conf: NAME.txt in Ultralytics' save_txt format beside the other outputs,
and part of what a resumed folder run checks."""
from __future__ import annotations

import re
import shutil

import cv2
import numpy as np

from conftest import REPO
from segkit import cli
from segkit.commands import folder, image
from segkit.segmentation import Segmentation
from segkit.io.sources import read_image

SAMPLE = REPO / "images" / "000000519208.jpg"  # one person
OTHER = REPO / "images" / "000000183709.jpg"


def _run(main, capsys, *args):
    rc = cli.run_main(main, [*map(str, args), "--model", "person_selfie_coco", "--quiet"])
    err = capsys.readouterr().err
    m = re.search(r"(\d+) images done, (\d+) skipped, (\d+) failed", err)
    return rc, (tuple(map(int, m.groups())) if m else None), err


def test_segment_image_writes_the_yolo_txt(capsys, tmp_path):
    rc, counts, err = _run(image.main, capsys, "-i", SAMPLE, "-o", tmp_path, "--save-txt", "--save-conf")
    assert rc == 0 and counts == (1, 0, 0), err
    assert (tmp_path / "000000519208.jpg").is_file()  # beside the overlay
    lines = (tmp_path / "000000519208.txt").read_text().splitlines()
    assert len(lines) == 1
    v = lines[0].split()
    assert v[0] == "0"  # person: index 0 of the 80 COCO classes
    coords = np.array(v[1:-1], float)
    assert len(coords) % 2 == 0 and len(coords) >= 6 and ((coords >= 0) & (coords <= 1)).all()
    assert 0.5 <= float(v[-1]) <= 1.0  # --save-conf: the score last
    # the person's outline: filled back, it covers the person the model found
    img = read_image(SAMPLE)
    h, w = img.shape[:2]
    poly = np.round(coords.reshape(-1, 2) * (w, h)).astype(np.int32)
    filled = np.zeros((h, w), np.uint8)
    cv2.fillPoly(filled, [poly], 1)
    assert filled[350, 540] == 1 and filled[200, 60] == 0  # the player in, the elephant out


def test_save_conf_needs_save_txt(capsys, tmp_path):
    rc, _, err = _run(image.main, capsys, "-i", SAMPLE, "-o", tmp_path, "--save-conf")
    assert rc == cli.EXIT_USAGE and "--save-conf" in err and "--save-txt" in err
    assert not list(tmp_path.iterdir())


def test_folder_resume_redoes_images_whose_txt_is_missing(capsys, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for p in (SAMPLE, OTHER):
        shutil.copy(p, src / p.name)
    rc, counts, err = _run(folder.main, capsys, "-i", src, "-o", out, "--save-txt")
    assert rc == 0 and counts == (2, 0, 0), err
    txt = out / "000000519208.txt"
    first = txt.read_text()
    assert first.startswith("0 ") and (out / "000000183709.txt").is_file()
    # a run before --save-txt existed, or killed between the overlay and the .txt: redone
    txt.unlink()
    rc, counts, err = _run(folder.main, capsys, "-i", src, "-o", out, "--save-txt")
    assert rc == 0 and counts == (1, 1, 0), err
    assert txt.read_text() == first
    rc, counts, _ = _run(folder.main, capsys, "-i", src, "-o", out, "--save-txt")
    assert counts == (0, 2, 0)
    assert not list(out.glob(".*.tmp"))  # no temp files left


def test_empty_result_writes_an_empty_file(tmp_path):
    from segkit.io.sinks import YoloTxt
    from segkit.io.sources import Frame

    sink = YoloTxt(tmp_path)
    frame = Frame(np.zeros((8, 8, 3), np.uint8), "nothing")
    assert sink.write(frame, Segmentation(8, 8)) == [tmp_path / "nothing.txt"] == sink.expected(frame)
    assert (tmp_path / "nothing.txt").read_text() == ""
