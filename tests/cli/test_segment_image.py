"""segment_image.py as a user runs it: a subprocess per call, outputs checked on disk."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

SAMPLE = "images/000000519208.jpg"


def run(repo, *args, cwd=None):
    return subprocess.run([sys.executable, str(repo / "bin" / "segment_image.py"), *args],
                          capture_output=True, text=True, cwd=cwd or repo, env=_env())


def _env():
    import os
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def test_default_run_writes_an_overlay(repo, tmp_path):
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "000000519208.jpg"))  # JPEG in, JPEG out
    src = np.asarray(Image.open(repo / SAMPLE))
    assert out.shape == src.shape
    assert np.abs(out[350, 540].astype(int) - src[350, 540]).sum() > 20  # person tinted
    assert np.abs(out[200, 60].astype(int) - src[200, 60]).sum() < 10   # elephant untouched
    assert "1 images done, 0 skipped, 0 failed" in r.stdout


def test_single_output_file_transparent_cutout_and_masks(repo, tmp_path):
    target = tmp_path / "cut.png"
    r = run(repo, "-i", SAMPLE, "-o", str(target), "--background", "transparent", "--save-masks")
    assert r.returncode == 0, r.stderr
    rgba = np.asarray(Image.open(target))
    assert rgba.shape == (406, 640, 4) and rgba[200, 60, 3] == 0 and rgba[350, 540, 3] == 255
    masks = list((tmp_path / "cut_masks").iterdir())
    assert [m.name for m in masks] == ["000_person.png"]


def test_json_is_loadable_by_coco_loadres(repo, tmp_path):
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path), "--json", "--no-visual")
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results[0]["image_id"] == 519208 and results[0]["category_id"] == 1
    gt = COCO()
    gt.dataset = {"images": [{"id": 519208, "width": 640, "height": 406}],
                  "categories": [{"id": 1, "name": "person"}], "annotations": []}
    gt.createIndex()
    dt = gt.loadRes(str(tmp_path / "results.json"))
    assert dt.annToMask(dt.loadAnns(dt.getAnnIds())[0])[350, 540] == 1


def test_bad_inputs_are_named_on_one_line_and_the_rest_still_done(repo, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a jpeg")
    data = (repo / SAMPLE).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    r = run(repo, "-i", str(tmp_path / "empty.jpg"), "-i", str(tmp_path / "text.jpg"), "-i", str(tmp_path / "cut.jpg"),
            "-i", str(tmp_path / "missing.jpg"), "-i", str(tmp_path), "-i", SAMPLE, "-o", str(out))
    assert r.returncode == 3
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("segkit: error:")]
    assert len(errors) == 5
    for name, problem in [("empty.jpg", "empty file"), ("text.jpg", "not an image"), ("cut.jpg", "truncated"),
                          ("missing.jpg", "no such file"), (tmp_path.name, "is a directory")]:
        assert any(name in e and problem in e for e in errors), (name, errors)
    assert (out / "000000519208.jpg").is_file()


def test_all_inputs_bad_exit_1(repo, tmp_path):
    r = run(repo, "-i", str(tmp_path / "missing.jpg"), "-o", str(tmp_path))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_never_writes_over_an_input(repo, tmp_path):
    src = tmp_path / "photo.png"
    Image.open(repo / SAMPLE).save(src)
    before = src.read_bytes()
    r = run(repo, "-i", str(src), "-o", str(src))
    assert r.returncode == 2 and "overwrite an input" in r.stderr
    r = run(repo, "-i", str(src), "-o", str(tmp_path))
    assert r.returncode == 2
    assert src.read_bytes() == before


def test_unknown_class_name_suggests_close_matches(repo, tmp_path):
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path), "--classes", "persn")
    assert r.returncode == 2 and "did you mean 'person'" in r.stderr and "Traceback" not in r.stderr


def test_class_filter_that_matches_nothing_leaves_the_image_untouched(repo, tmp_path):
    # the 80-class model can find dogs, but this photo has none (a dog with the default person
    # model is refused instead: tests/cli/test_classes.py)
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path), "--classes", "dog", "--model", "yolov5s_seg_coco",
            "--ext", "png")
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "000000519208.png")).astype(int)
    src = np.asarray(Image.open(repo / SAMPLE)).astype(int)
    assert np.abs(out - src).max() <= 3  # only PNG-vs-JPEG decoding noise


def test_show_without_display_is_a_note_not_a_crash(repo, tmp_path):
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path), "--show")
    assert r.returncode == 0 and "no display" in r.stdout


def test_exif_rotated_input_comes_out_as_the_viewer_shows_it(repo, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(repo / SAMPLE).save(tmp_path / "rot.jpg", exif=exif)
    r = run(repo, "-i", str(tmp_path / "rot.jpg"), "-o", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "o" / "rot.jpg").size == (406, 640)


def test_unknown_model_and_bad_model_path(repo, tmp_path):
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path), "--model", "selfie_segmentaton")
    assert r.returncode != 0 and "selfie_segmentation" in r.stderr and "Traceback" not in r.stderr
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path), "--model-path", str(bogus))
    assert r.returncode == 1 and "model.tflite" in r.stderr and "Traceback" not in r.stderr


def test_help_explains(repo):
    r = run(repo, "--help")
    assert r.returncode == 0 and "--background" in r.stdout and "exit codes" in r.stdout


def _draw_dog(path, h=333, w=517):
    """A red ellipse: the OD API shape-finder doubles report red pixels as a 'dog' (id 18)."""
    import cv2
    img = np.zeros((h, w, 3), np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 4, h // 5), 20, 0, 360, (255, 0, 0), -1)
    Image.fromarray(img).save(path)
    return img[..., 0] > 0


@pytest.mark.parametrize("fixture", ["tf2_model_dir", "tf1_graph_file"])
def test_instance_model_by_path_overlay_masks_and_json(repo, tmp_path, request, fixture):
    from pycocotools import mask as mask_utils

    truth = _draw_dog(tmp_path / "dog.png")
    model = request.getfixturevalue(fixture)
    out = tmp_path / "out"
    r = run(repo, "-i", str(tmp_path / "dog.png"), "-o", str(out), "--model-path", str(model),
            "--save-masks", "--json", "--classes", "dog")
    assert r.returncode == 0, r.stderr
    assert (out / "dog.png").is_file()
    masks = sorted((out / "dog_masks").iterdir())
    assert [m.name for m in masks] == ["000_dog.png"]
    got = np.asarray(Image.open(masks[0])) > 0
    assert (got & truth).sum() / (got | truth).sum() >= 0.95
    (res,) = json.loads((out / "results.json").read_text())
    assert res["image_id"] == "dog" and res["category_id"] == 18
    assert (mask_utils.decode(res["segmentation"]).astype(bool) == got).all()
    # --classes person filters the dog away
    r = run(repo, "-i", str(tmp_path / "dog.png"), "-o", str(tmp_path / "o2"), "--model-path", str(model),
            "--save-masks", "--classes", "person")
    assert r.returncode == 0 and list((tmp_path / "o2" / "dog_masks").iterdir()) == []


def test_model_garden_export_by_path(repo, tmp_path, garden_export):
    """The driven export always finds a dog at a known box (tests/fixtures/garden_model.py)."""
    from fixtures.garden_model import expected_box
    Image.new("RGB", (517, 333), (90, 90, 90)).save(tmp_path / "grey.png")
    r = run(repo, "-i", str(tmp_path / "grey.png"), "-o", str(tmp_path / "o"), "--model-path", str(garden_export),
            "--classes", "dog", "--json", "--no-visual")
    assert r.returncode == 0, r.stderr
    (res,) = json.loads((tmp_path / "o" / "results.json").read_text())
    x0, y0, x1, y1 = expected_box(18, 333, 517)
    assert res["category_id"] == 18
    np.testing.assert_allclose(res["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1.0)


def test_show_opens_a_window_with_the_result_and_q_closes_it(repo, tmp_path):
    """--show under a real (virtual) X display: the overlay is on screen, q ends the script."""
    import os
    import time
    from fixtures.xdisplay import find_window, press_key, screenshot, xvfb

    with xvfb(800, 600) as display:
        env = {**_env(), "DISPLAY": display}
        proc = subprocess.Popen([sys.executable, str(repo / "bin" / "segment_image.py"), "-i", SAMPLE,
                                 "-o", str(tmp_path), "--show"], cwd=repo, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while find_window(display, "segkit") is None:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no window appeared"
                time.sleep(0.2)
            time.sleep(0.5)  # let Tk paint
            shot = np.asarray(screenshot(display)).astype(int)
            written = np.asarray(Image.open(tmp_path / "000000519208.jpg")).astype(int)
            # the written overlay (640x406) is somewhere on the 800x600 screen, pixel for pixel
            h, w = written.shape[:2]
            found = any((np.abs(shot[y:y + h, x:x + w] - written) <= 2).mean() > 0.99
                        for y in range(0, 600 - h + 1) for x in range(0, 800 - w + 1)
                        if (np.abs(shot[y, x] - written[0, 0]) <= 2).all())
            assert found, "the overlay is not what the window shows"
            press_key(display, "q")
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and os.path.exists(tmp_path / "000000519208.jpg")
