"""--classes and --list-classes know which classes the chosen model can produce."""
from __future__ import annotations

import subprocess
import sys

import pytest

IMAGE = "images/000000519208.jpg"


def run(repo, script, *args, env=None):
    return subprocess.run([sys.executable, str(repo / "bin" / script), *args], capture_output=True,
                          text=True, cwd=repo, env=env, timeout=120)


@pytest.mark.parametrize("script,args", [
    ("segment_image.py", ["-i", IMAGE]),
    ("segment_folder.py", ["-i", "images", "-o", "{tmp}/out"]),
    ("segment_webcam.py", ["--source", "{tmp}/none.avi"]),
    ("evaluate.py", ["--annotations", "{tmp}/a.json", "--images", "images"]),
])
def test_a_class_the_person_model_cannot_produce_is_a_usage_error(repo, tmp_path, script, args):
    r = run(repo, script, *[a.format(tmp=tmp_path) for a in args], "--classes", "person,dog")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "dog" in lines[0] and "person_selfie_coco" in lines[0], r.stderr
    assert "person," not in lines[0].split("cannot")[0]  # names only the missing class
    assert not (tmp_path / "out").exists()  # refused before any work


def test_classes_of_an_instance_model_pass_the_check(repo, tmp_path):
    # mask_rcnn (COCO) can produce dogs: the check passes and the run stops at the model fetch
    # (never downloaded here), not at --classes
    import os
    env = dict(os.environ, SEGKIT_MODEL_DIR=str(tmp_path))
    r = run(repo, "segment_image.py", "-i", IMAGE, "--model", "mask_rcnn_inception_v2_coco_2018_01_28",
            "--classes", "dog", "--no-download", env=env)
    assert "--classes" not in r.stderr and r.returncode == 1, r.stderr


def test_list_classes_is_the_chosen_models_without_download_or_tensorflow(repo, tmp_path):
    import os
    env = dict(os.environ, SEGKIT_MODEL_DIR=str(tmp_path))
    code = ("import sys\n"
            "from segkit.commands.image import main\n"
            "try:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'tensorflow' not in sys.modules, 'imported tensorflow'\n")
    default = subprocess.run([sys.executable, "-c", code, "--list-classes"], capture_output=True,
                             text=True, cwd=repo, env=env, check=True)
    assert default.stdout.split() == ["1", "person"] and "person_selfie_coco" in default.stderr
    for model in ("mask_rcnn_inception_v2_coco_2018_01_28", "yolov5s_seg_coco"):
        # --model after --list-classes: the whole command line counts, not the order
        coco = subprocess.run([sys.executable, "-c", code, "--list-classes", "--model", model],
                              capture_output=True, text=True, cwd=repo, env=env, check=True)
        assert len(coco.stdout.splitlines()) == 80 and "22  elephant" in coco.stdout and model in coco.stderr
    assert list(tmp_path.iterdir()) == []  # nothing fetched, nothing converted


def test_list_classes_of_an_unknown_model_exits_2(repo):
    r = run(repo, "segment_image.py", "--list-classes", "--model", "no_such_model")
    assert r.returncode == 2 and "no_such_model" in r.stderr


def test_readme_example_keeps_only_the_asked_classes_of_the_80_class_model(repo, tmp_path):
    """The README's second example, with yolov5s_seg_coco fetched through the zoo (model dir)."""
    import json

    r = run(repo, "segment_image.py", "-i", IMAGE, "--model", "yolov5s_seg_coco", "--classes", "person,elephant",
            "-o", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert {d["category_id"] for d in results} == {1, 22}  # person and elephant, nothing else
    assert (tmp_path / "000000519208.jpg").stat().st_size > 0  # JPEG in, JPEG overlay out
    only_person = run(repo, "segment_image.py", "-i", IMAGE, "--model", "yolov5s_seg_coco", "--classes", "person",
                      "-o", str(tmp_path / "p"), "--json")
    assert only_person.returncode == 0, only_person.stderr
    assert {d["category_id"] for d in json.loads((tmp_path / "p" / "results.json").read_text())} == {1}


def test_evaluate_takes_the_yolo_model_unchanged(repo, coco_val, tmp_path):
    import json

    ann, images = coco_val
    r = run(repo, "evaluate.py", "--annotations", str(ann), "--images", str(images), "--model", "yolov5s_seg_coco",
            "--limit", "3", "--quiet", "-o", str(tmp_path / "ap.json"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ap.json").read_text())
    assert 0.2 < m["segm"]["AP"] <= 1 and 0.2 < m["bbox"]["AP"] <= 1
    # --semantic without --classes scores every COCO class the instance model has
    r = run(repo, "evaluate.py", "--annotations", str(ann), "--images", str(images), "--model", "yolov5s_seg_coco",
            "--limit", "2", "--quiet", "--semantic", "--threshold", "0.25")
    assert r.returncode == 0 and "person" in r.stdout, r.stderr
