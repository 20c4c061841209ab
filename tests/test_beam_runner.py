"""segment_folder.py --runner beam (DirectRunner): the same outputs, results, names, failures and
resume behaviour as the local runner on the same inputs."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path

pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")

SCRIPT = REPO / "bin" / "segment_folder.py"
MODEL = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"


@pytest.fixture(scope="module")
def script():
    mod = importlib.import_module("segkit.commands.folder")
    return mod


def run(script, capsys, runner: str, *args) -> tuple[int, dict]:
    from segkit import cli

    rc = cli.run_main(script.main, [*map(str, args), "--model-path", str(MODEL), "--quiet",
                                    "--runner", runner])
    err = capsys.readouterr().err
    m = re.search(r"(\d+) images done, (\d+) skipped, (\d+) failed", err)
    assert m or rc == 2, err
    return rc, dict(zip(("done", "skipped", "failed"), map(int, m.groups()))) if m else {}


def outputs_of(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and ".segkit" not in p.parts)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def make_image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_same_masks_visuals_and_results_as_local_on_coco(script, capsys, tmp_path):
    from pycocotools.coco import COCO

    ann = shared_path("coco", "annotations", "instances_val2017.json")
    images = shared_path("coco", "val2017")
    gt = COCO(str(ann))

    # Six images where people fill much of the frame, so the person model finds masks.
    def person_share(iid):
        im = gt.imgs[iid]
        return sum(a["area"] for a in gt.imgToAnns[iid] if a["category_id"] == 1) / (im["height"] * im["width"])
    src = tmp_path / "in"
    src.mkdir()
    for iid in sorted(gt.getImgIds(catIds=[1]), key=person_share)[-6:]:
        name = gt.imgs[iid]["file_name"]
        (src / name).write_bytes((images / name).read_bytes())

    local, beam = tmp_path / "local", tmp_path / "beam"
    assert run(script, capsys, "local", "-i", src, "-o", local, "--json", "--save-masks") == \
        (0, {"done": 6, "skipped": 0, "failed": 0})
    assert run(script, capsys, "beam", "-i", src, "-o", beam, "--json", "--save-masks") == \
        (0, {"done": 6, "skipped": 0, "failed": 0})

    files = outputs_of(local)
    assert files == outputs_of(beam)
    masks = [f for f in files if "_masks/" in f]
    assert len(masks) >= 4, "the fixture should exercise real masks"
    for f in files:
        if f.endswith((".png", ".jpg")):
            a, b = pixels(local / f), pixels(beam / f)
            assert a.shape == b.shape and np.array_equal(a, b), f
    key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    results = json.loads((local / "results.json").read_text())
    assert results and sorted(results, key=key) == sorted(json.loads((beam / "results.json").read_text()), key=key)
    assert (beam / "failures.jsonl").read_text() == ""

    # Resume: everything complete is skipped, and the merged results stay the same.
    assert run(script, capsys, "beam", "-i", src, "-o", beam, "--json", "--save-masks") == \
        (0, {"done": 0, "skipped": 6, "failed": 0})
    assert sorted(json.loads((beam / "results.json").read_text()), key=key) == sorted(results, key=key)


def test_bad_files_go_to_failures_like_local_and_resume(script, capsys, tmp_path):
    src = tmp_path / "in"
    good = make_image(src / "good.jpg")
    (src / "empty.jpg").write_bytes(b"")
    data = good.read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "text.png").write_text("not an image at all\n")

    def failures(out):
        return sorted((Path(d["file"]).name, d["reason"])
                      for d in map(json.loads, (out / "failures.jsonl").read_text().splitlines()))

    expected = {"done": 1, "skipped": 0, "failed": 3}
    assert run(script, capsys, "local", "-i", src, "-o", tmp_path / "local", "--json") == (3, expected)
    assert run(script, capsys, "beam", "-i", src, "-o", tmp_path / "beam", "--json") == (3, expected)
    got = failures(tmp_path / "beam")
    assert got == failures(tmp_path / "local")
    assert [name for name, _ in got] == ["empty.jpg", "text.png", "truncated.jpg"]
    assert (tmp_path / "beam" / "good.jpg").is_file()
    assert json.loads((tmp_path / "beam" / "results.json").read_text()) == \
        json.loads((tmp_path / "local" / "results.json").read_text())

    # Rerun: the good image is skipped, the bad ones fail again; failures.jsonl is rewritten.
    assert run(script, capsys, "beam", "-i", src, "-o", tmp_path / "beam", "--json") == \
        (3, {"done": 0, "skipped": 1, "failed": 3})
    assert failures(tmp_path / "beam") == got
    assert run(script, capsys, "beam", "-i", src, "-o", tmp_path / "beam", "--json", "--overwrite")[1]["done"] == 1

    (src / "good.jpg").unlink()
    assert run(script, capsys, "beam", "-i", src, "-o", tmp_path / "bad_only")[0] == 1  # none could be done


def test_names_match_local_on_trees_globs_and_collisions(script, capsys, tmp_path):
    src = tmp_path / "in"
    for i, rel in enumerate(["a/x.jpg", "b/x.jpg", "b/deeper/x.jpg", "y.jpg", "y.png", ".hidden.jpg",
                             "b/.cache/x.jpg"]):  # a folder walk takes hidden folders, a glob does not
        make_image(src / rel, seed=i)
    (src / "notes.txt").write_text("not an image\n")
    cases = {
        "tree": ["-i", src, "-r"],
        "flat": ["-i", src],
        # names relative to what the glob matched; x.jpg of a/ collides; b/x.jpg is reached twice
        "globs": ["-i", f"{src}/b/**/*.jpg", "-i", src / "a", "-i", src / "b", "--pattern", "x.*"],
    }
    for case, args in cases.items():
        local, beam = tmp_path / f"local_{case}", tmp_path / f"beam_{case}"
        rc_local, c_local = run(script, capsys, "local", *args, "-o", local)
        visuals = [f for f in outputs_of(local) if f.endswith((".png", ".jpg"))]
        assert (rc_local, c_local["done"]) == (0, len(visuals)) and c_local["done"] >= 2
        assert run(script, capsys, "beam", *args, "-o", beam) == (rc_local, c_local), case
        assert outputs_of(beam) == outputs_of(local), case


def test_usage_errors(script, capsys, tmp_path):
    src = tmp_path / "in"
    make_image(src / "a.jpg")
    assert run(script, capsys, "beam", "-i", src, "-o", src)[0] == 2  # into the input folder
    assert run(script, capsys, "beam", "-i", src / "a.jpg", "-o", tmp_path / "o")[0] == 2  # a file
    assert run(script, capsys, "beam", "-i", tmp_path / "nothing_here*", "-o", tmp_path / "o")[0] == 2
    assert [p.name for p in src.iterdir()] == ["a.jpg"]

    # A model the workers cannot load: one line naming the file, not Beam's worker traceback.
    from segkit import cli
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    rc = cli.run_main(script.main, ["-i", str(src), "-o", str(tmp_path / "o2"), "--model-path", str(bad),
                                    "--quiet", "--runner", "beam"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and err.startswith(f"segkit: error: {bad}: cannot load"), err


def test_localize_copies_model_files_and_folders(tmp_path):
    from segkit.beam_runner import localize
    from segkit.errors import SegkitError

    folder = tmp_path / "export" / "saved_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    copy = localize(str(folder), tmp_path / "dest1")
    assert copy == tmp_path / "dest1" / "saved_model"
    assert (copy / "saved_model.pb").read_bytes() == b"graph"
    assert (copy / "variables" / "variables.index").read_bytes() == b"index"
    assert localize(str(MODEL), tmp_path / "dest2").read_bytes() == MODEL.read_bytes()
    with pytest.raises(SegkitError, match="no such model"):
        localize(str(tmp_path / "missing.tflite"), tmp_path / "dest3")


def test_the_beam_runner_is_library_code_without_the_command_layer():
    """Workers import beam_runner: it must not pull in the CLI (segkit.cli, segkit.commands)."""
    import subprocess
    import sys

    probe = ("import sys, segkit.beam_runner; "
             "print(sorted(m for m in sys.modules if m == 'segkit.cli' or m.startswith('segkit.commands')))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
