"""--save-crop: NAME_crops/NNN_<class>.jpg, each kept instance cut out of the photo along its box,
and part of what a resumed folder run checks."""
from __future__ import annotations

import re
import shutil

import numpy as np

from conftest import REPO
from segkit import cli
from segkit.commands import folder
from segkit.io.sources import read_image

SAMPLE = REPO / "images" / "000000519208.jpg"


def _run(capsys, *args):
    rc = cli.run_main(folder.main, [*map(str, args), "--model", "person_selfie_coco", "--quiet"])
    err = capsys.readouterr().err
    m = re.search(r"(\d+) images done, (\d+) skipped, (\d+) failed", err)
    return rc, tuple(map(int, m.groups())), err


def test_crops_are_the_instances_boxes_of_the_photo_and_resume(capsys, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(SAMPLE, src)
    rc, counts, err = _run(capsys, "-i", src, "-o", out, "--save-crop", "--save-masks")
    assert rc == 0 and counts == (1, 0, 0), err
    crops = sorted((out / "000000519208_crops").iterdir())
    masks = sorted((out / "000000519208_masks").iterdir())
    assert [c.name for c in crops] == ["000_person.jpg"] and len(masks) == 1
    mask = read_image(masks[0])[..., 0] > 127
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = read_image(crops[0])
    assert crop.shape[:2] == (y1 - y0, x1 - x0)  # exactly the instance's box
    photo = read_image(SAMPLE)[y0:y1, x0:x1]
    assert np.abs(crop.astype(int) - photo).mean() < 3  # the photo's own pixels (JPEG q95)

    rc, counts, _ = _run(capsys, "-i", src, "-o", out, "--save-crop", "--save-masks")
    assert counts == (0, 1, 0)  # complete: skipped
    shutil.rmtree(out / "000000519208_crops")
    rc, counts, _ = _run(capsys, "-i", src, "-o", out, "--save-crop", "--save-masks")
    assert counts == (1, 0, 0) and (out / "000000519208_crops" / "000_person.jpg").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".segkit"]  # no temp left
