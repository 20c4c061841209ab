"""segment_folder.py: resume, kill -9 safety, failures, name collisions, COCO results JSON."""
from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path

SCRIPT = REPO / "bin" / "segment_folder.py"
MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"


def _load_script():
    mod = importlib.import_module("segkit.commands.folder")
    return mod


@pytest.fixture(scope="module")
def script():
    return _load_script()


def run(script, capsys, *args) -> tuple[int, dict]:
    """Run main() in-process; return (exit code, counts parsed from the summary line)."""
    from segkit import cli

    rc = cli.run_main(script.main, [*map(str, args), "--model-path", str(MODEL), "--quiet"])
    err = capsys.readouterr().err
    m = re.search(r"(\d+) images done, (\d+) skipped, (\d+) failed", err)
    counts = dict(zip(("done", "skipped", "failed"), map(int, m.groups()))) if m else {}
    return rc, counts


def make_image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 128)], -1).astype(np.uint8)
    img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def test_resume_skips_complete_redoes_missing_and_overwrite(script, capsys, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        make_image(src / f"im{i}.jpg", seed=i)
    rc, c = run(script, capsys, "-i", src, "-o", out, "--json")
    assert rc == 0 and c == {"done": 4, "skipped": 0, "failed": 0}
    assert sorted(p.name for p in out.glob("im*")) == [f"im{i}.jpg" for i in range(4)]  # JPEG in, JPEG out

    rc, c = run(script, capsys, "-i", src, "-o", out, "--json")
    assert rc == 0 and c == {"done": 0, "skipped": 4, "failed": 0}

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    (out / "im2.jpg").unlink()
    rc, c = run(script, capsys, "-i", src, "-o", out, "--json")
    assert rc == 0 and c == {"done": 1, "skipped": 3, "failed": 0}
    assert (out / "im2.jpg").is_file()
    for name in ("im0.jpg", "im1.jpg", "im3.jpg"):
        assert (out / name).stat().st_mtime_ns == mtimes[name]  # untouched

    # Asking for masks now: existing overlays lack them, so every image is redone.
    rc, c = run(script, capsys, "-i", src, "-o", out, "--json", "--save-masks")
    assert rc == 0 and c["done"] == 4 and all((out / f"im{i}_masks").is_dir() for i in range(4))

    rc, c = run(script, capsys, "-i", src, "-o", out, "--json", "--save-masks", "--overwrite")
    assert rc == 0 and c == {"done": 4, "skipped": 0, "failed": 0}
    assert sorted(p.name for p in src.iterdir()) == [f"im{i}.jpg" for i in range(4)], \
        "nothing may be written into the input folder"


def test_failures_recorded_and_exit_codes(script, capsys, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    good = make_image(src / "good.jpg")
    (src / "empty.jpg").write_bytes(b"")
    data = good.read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "text.jpg").write_text("not an image at all\n")

    rc, c = run(script, capsys, "-i", src, "-o", out)
    assert rc == 3 and c == {"done": 1, "skipped": 0, "failed": 3}
    lines = [json.loads(s) for s in (out / "failures.jsonl").read_text().splitlines()]
    reasons = {Path(d["file"]).name: d["reason"] for d in lines}
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "text.jpg"}
    assert "0 bytes" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert (out / "good.jpg").is_file() and not list(out.glob("empty.*"))

    # Rerun: the good image is skipped, the bad ones are tried (and fail) again: still 3.
    rc, c = run(script, capsys, "-i", src, "-o", out)
    assert rc == 3 and c == {"done": 0, "skipped": 1, "failed": 3}
    assert len((out / "failures.jsonl").read_text().splitlines()) == 3  # rewritten, not appended

    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "a.jpg").write_bytes(b"")
    rc, c = run(script, capsys, "-i", bad_only, "-o", tmp_path / "out2")
    assert rc == 1 and c["failed"] == 1


def test_nested_same_names_never_collide(script, capsys, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "a" / "x.jpg", seed=1)
    make_image(src / "b" / "x.jpg", seed=2)
    make_image(src / "b" / "deeper" / "x.jpg", seed=3)
    make_image(src / "y.jpg", seed=4)
    make_image(src / "y.png", seed=5)  # same stem, other format
    rc, c = run(script, capsys, "-i", src, "-o", out, "--recursive", "--save-masks")
    assert rc == 0 and c["done"] == 5
    visuals = sorted(str(p.relative_to(out)) for p in out.rglob("*.*")
                     if "_masks" not in str(p) and p.suffix in (".png", ".jpg"))
    assert visuals == ["a/x.jpg", "b/deeper/x.jpg", "b/x.jpg", "y_jpg.jpg", "y_png.png"]
    # without --recursive only the top level is taken
    rc, c = run(script, capsys, "-i", src, "-o", tmp_path / "flat")
    assert c["done"] == 2 and not (tmp_path / "flat" / "a").exists()
    # a glob pattern filters names
    rc, c = run(script, capsys, "-i", src, "-o", tmp_path / "pat", "-r", "--pattern", "x.*")
    assert c["done"] == 3


def test_refuses_to_write_into_the_input_folder(script, capsys, tmp_path):
    src = tmp_path / "in"
    make_image(src / "a.png")
    before = sorted(os.listdir(src))
    rc, _ = run(script, capsys, "-i", src, "-o", src)
    assert rc == 2 and sorted(os.listdir(src)) == before
    # An output folder inside the input tree is fine, and its files are not taken as inputs.
    rc, c = run(script, capsys, "-i", src, "-o", src / "seg", "-r")
    rc, c = run(script, capsys, "-i", src, "-o", src / "seg", "-r")
    assert rc == 0 and c == {"done": 0, "skipped": 1, "failed": 0}


def test_json_results_load_with_coco(script, capsys, tmp_path, coco_val):
    from pycocotools.coco import COCO

    ann, images = coco_val
    gt = COCO(str(ann))
    # the three images where people fill most of the frame: the selfie model finds them
    def person_share(iid):
        im = gt.imgs[iid]
        return sum(a["area"] for a in gt.imgToAnns[iid] if a["category_id"] == 1) / (im["height"] * im["width"])
    person_imgs = sorted(gt.getImgIds(catIds=[1]), key=person_share)[-3:]
    src = tmp_path / "in"
    src.mkdir()
    for iid in person_imgs:
        name = gt.imgs[iid]["file_name"]
        (src / f"renamed_{name}").write_bytes((images / name).read_bytes())
        (src / name).write_bytes((images / name).read_bytes())
    out = tmp_path / "out"
    rc, c = run(script, capsys, "-i", src, "-o", out, "--json", "--no-visual",
                "--coco-annotations", ann)
    assert rc == 0 and c["done"] == 6 and not list(out.glob("*.png")) and not list(out.glob("*.jpg"))
    results = json.loads((out / "results.json").read_text())
    assert results and {r["category_id"] for r in results} == {1}
    # file_name lookup: exact names get their COCO id; the renamed copies fall back to their stem
    ids = {r["image_id"] for r in results}
    assert set(person_imgs) <= ids
    assert all(isinstance(i, int) or i.startswith("renamed_") for i in ids)
    dt = gt.loadRes([r for r in results if isinstance(r["image_id"], int)])
    assert {a["image_id"] for a in dt.anns.values()} == set(person_imgs)
    for a in dt.anns.values():
        im = gt.imgs[a["image_id"]]
        assert dt.annToMask(a).shape == (im["height"], im["width"])


def test_sigkill_mid_run_leaves_no_partial_output_and_rerun_finishes(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    n = 40
    for i in range(n):
        make_image(src / f"sub{i % 2}" / f"im{i:02d}.jpg", w=640, h=480, seed=i)  # noise: slow PNGs
    cmd = [sys.executable, str(SCRIPT), "-i", str(src), "-o", str(out), "-r", "--json", "--save-masks",
           "--model-path", str(MODEL), "--quiet", "--ext", "png"]  # PNG: slow enough to kill mid-run
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.rglob("im*.png"))) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visuals = [p for p in out.rglob("im*.png") if "_masks" not in str(p.parent)]
    assert 5 <= len(visuals) < n, "the kill should land mid-run"
    for p in out.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            assert not p.name.endswith(".tmp")
            if p.suffix == ".png":
                with Image.open(p) as im:
                    im.load()  # every visible output decodes whole
            if p.suffix == ".json":
                json.loads(p.read_text())

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.search(r"(\d+) images done, (\d+) skipped, 0 failed", r.stderr)
    assert m and int(m[1]) + int(m[2]) == n and int(m[2]) >= 1
    assert len([p for p in out.rglob("im*.png") if "_masks" not in str(p.parent)]) == n
    assert len(list(out.rglob("im*_masks"))) == n
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".im" in p.name]
    results = json.loads((out / "results.json").read_text())
    assert isinstance(results, list)
    cached = list((out / ".segkit" / "results").rglob("*.json"))
    assert len(cached) == n


# --------------------------------------------------------------------------- settings (issue #24 part 6)
OTHER_MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation_landscape.tflite"


def run_with(script, capsys, model, *args) -> tuple[int, dict, str]:
    """Like run(), with the model chosen; also returns stderr (the note and the summary)."""
    from segkit import cli

    rc = cli.run_main(script.main, [*map(str, args), "--model-path", str(model), "--quiet"])
    err = capsys.readouterr().err
    m = re.search(r"(\d+) images done, (\d+) skipped, (\d+) failed", err)
    return rc, dict(zip(("done", "skipped", "failed"), map(int, m.groups()))) if m else {}, err


@pytest.mark.parametrize("first,second", [(MODEL, OTHER_MODEL), (OTHER_MODEL, MODEL)])
def test_outputs_made_with_another_model_are_redone_in_both_orders(script, capsys, tmp_path, first, second):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        make_image(src / f"im{i}.png", seed=i)
    rc, c, _ = run_with(script, capsys, first, "-i", src, "-o", out, "--json")
    assert rc == 0 and c == {"done": 2, "skipped": 0, "failed": 0}

    rc, c, err = run_with(script, capsys, second, "-i", src, "-o", out, "--json")
    assert rc == 0 and c == {"done": 2, "skipped": 0, "failed": 0}, err  # not "2 skipped"
    note = [ln for ln in err.splitlines() if "other settings" in ln]
    assert len(note) == 1 and first.name in note[0] and second.name in note[0], err
    assert "2 earlier outputs replaced" in err
    for i in range(2):  # every output now says it was made by the second model
        made = json.loads((out / ".segkit" / "made" / f"im{i}.json").read_text())
        assert made["settings"]["model"] == str(second.resolve())

    rc, c, err = run_with(script, capsys, second, "-i", src, "-o", out, "--json")
    assert rc == 0 and c == {"done": 0, "skipped": 2, "failed": 0} and "other settings" not in err


@pytest.mark.parametrize("first,second", [((), ("--classes", "person", "--threshold", "0.9")),
                                          (("--classes", "person", "--threshold", "0.9"), ()),
                                          ((), ("--background", "white")),
                                          (("--background", "white"), ())])
def test_outputs_made_with_other_classes_threshold_or_background_are_redone(script, capsys, tmp_path,
                                                                             first, second):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "im0.png")
    rc, c, _ = run_with(script, capsys, MODEL, "-i", src, "-o", out, "--json", *first)
    assert rc == 0 and c["done"] == 1
    rc, c, err = run_with(script, capsys, MODEL, "-i", src, "-o", out, "--json", *second)
    assert rc == 0 and c == {"done": 1, "skipped": 0, "failed": 0}, err
    assert "other settings" in err and ("threshold" in err or "background" in err), err
    # 'person' and '1' are the same setting: nothing to redo
    if "--classes" in second:
        rc, c, err = run_with(script, capsys, MODEL, "-i", src, "-o", out, "--json", "--classes", "1",
                              "--threshold", "0.9")
        assert c == {"done": 0, "skipped": 1, "failed": 0}, err


def test_an_input_being_redone_loses_its_record_before_its_files_are_rewritten(tmp_path):
    """A run killed half-way through rewriting an input must not leave the old record beside a
    mix of old and new files: the record goes first, and comes back last."""
    from segkit.io.resume import Made, plan_run
    from segkit.io.sinks import Sink
    from segkit.io.sources import Frame

    seen = []

    class Spy(Sink):
        def expected(self, frame):
            return [tmp_path / f"{frame.name}.png"]

        def write(self, frame, seg):
            seen.append(made.path(frame.name).exists())
            (tmp_path / f"{frame.name}.png").write_bytes(b"x")
            return []

    from segkit.flow import write

    old = Made(tmp_path, {"model": "a"})
    old.write(Frame(None, "im", tmp_path / "im.jpg"), None)
    made = Made(tmp_path, {"model": "b"})
    sinks = [made.first(), Spy(), made]
    plan = plan_run([(tmp_path / "im.jpg", "im")], sinks)
    assert plan.todo and not plan.skipped
    write(sinks, Frame(None, "im", tmp_path / "im.jpg"), None)
    assert seen == [False]  # gone while the picture was written
    assert plan_run([(tmp_path / "im.jpg", "im")], sinks).skipped  # and back, with b, after


def test_a_rerun_asking_for_more_outputs_with_another_model_says_it_replaces_the_old_ones(script, capsys, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_image(src / "im0.png")
    run_with(script, capsys, MODEL, "-i", src, "-o", out)
    rc, c, err = run_with(script, capsys, OTHER_MODEL, "-i", src, "-o", out, "--save-masks")
    assert rc == 0 and c["done"] == 1 and "1 earlier output replaced" in err, err
    rc, c, err = run_with(script, capsys, OTHER_MODEL, "-i", src, "-o", out, "--save-masks", "--json")
    assert c["done"] == 1 and "replaced" not in err and "other settings" not in err, err  # same settings: only added
