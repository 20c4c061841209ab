"""What a newcomer reads: --help examples that run as written (files that exist, `segkit SUB`
and the bin/ script), every train flag explained with its default, commands named as this
install runs them, licences in `fetch --list`, and one-line errors where there were tracebacks."""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from segkit.commands import COMMANDS


def _help(script):
    r = subprocess.run([sys.executable, str(REPO / "bin" / script), "--help"], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("sub", list(COMMANDS))
def test_help_examples_name_the_command_both_ways_and_files_that_exist(sub):
    script = COMMANDS[sub][1]
    text = _help(script)
    commands = "\n".join(line for line in text.splitlines() if f"segkit {sub}" in line or script in line)
    for path in re.findall(r"(?<![\w/])images/[\w.*]+", commands):  # the repository's sample photos
        assert list(REPO.glob(path)), f"{script} --help names {path}, which does not exist"
    assert "images/person.jpg" not in text
    if "xamples" in text:
        example_lines = [line for line in text.splitlines() if line.startswith("  ") and script in line]
        assert f"segkit {sub} " in text and f"bin/{script} is the same command" in text
        assert all("is the same command" in line for line in example_lines), example_lines  # no old-style examples


def test_model_path_help_names_pt_and_the_threshold_default_by_kind():
    text = " ".join(_help("segment_image.py").split())
    assert "a YOLOv5/v7-seg .pt" in text and "--imgsz N" in text and "--iou T" in text
    assert "default 0.25 for instance models (scores), 0.5 for person / probability-map models" in text


def test_every_train_flag_has_help_and_a_default():
    from segkit.commands.train import build_parser

    parser = build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = formatter._get_help_string(action)
        assert action.help, action.option_strings
        assert "default" in text or "(required)" in text, (action.option_strings, text)


def test_messages_name_the_command_as_this_install_runs_it(monkeypatch, tmp_path):
    from segkit import invocation, zoo

    assert invocation.command("fetch") == "bin/fetch_model.py"  # this checkout has bin/
    with pytest.raises(zoo.UnknownModelError, match=r"see `bin/fetch_model.py --list`"):
        zoo.load_registry().get("selfie_segmentaton")
    invocation.command.cache_clear()
    monkeypatch.setattr(invocation, "CHECKOUT_BIN", tmp_path / "bin")  # a wheel has no bin/ beside it
    try:
        assert invocation.command("fetch") == "segkit fetch"
        with pytest.raises(zoo.UnknownModelError, match=r"see `segkit fetch --list`"):
            zoo.load_registry().get("selfie_segmentaton")
        spec = zoo.load_registry().get("yolov7_seg_coco")
        monkeypatch.setenv("SEGKIT_MODEL_DIR", str(tmp_path / "empty"))
        with pytest.raises(zoo.ZooError, match=r"fetch it with `segkit fetch yolov7_seg_coco`"):
            zoo.resolve(spec, download=False)
    finally:
        invocation.command.cache_clear()


def test_fetch_list_shows_every_licence_the_bundled_default_included():
    r = subprocess.run([sys.executable, str(REPO / "bin" / "fetch_model.py"), "--list"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:-1]]
    default = next(row for row in rows if row[1] == "*")
    assert default[0] == "person_selfie_coco" and default[5] == "Apache-2.0"
    assert all("?" not in row[:6] for row in rows), rows


def test_a_missing_file_given_by_name_is_not_said_to_come_from_a_listing(tmp_path):
    from segkit.io.sources import ImageFiles

    missing = tmp_path / "typo.jpg"
    with ImageFiles([(missing, "typo")], listed=True) as listed:
        assert str(listed.next().error) == f"{missing}: no such file (it may have been removed after the folder was listed)"
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i", str(missing),
                        "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"segkit: error: {missing}: no such file\n" in r.stderr


def test_native_log_lines_are_hidden_and_everything_else_passes(capfd):
    from segkit import cli

    with cli.native_logs_hidden():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796675009.630748    1288 device_compiler.h:196] Compiled cluster using XLA!\n")
        print("segkit: error: a real problem", file=sys.stderr, flush=True)
        os.write(2, b"W1207 20:05:11.000001  77 tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.\nepoch 1\r")
    assert capfd.readouterr().err == "segkit: error: a real problem\nepoch 1\r"
    with cli.native_logs_hidden(verbose=True):
        os.write(2, b"I0000 00:00:1.5    1 x.cc:1] shown with --verbose\n")
    assert "shown with --verbose" in capfd.readouterr().err


def test_the_readme_dataflow_example_with_its_placeholders_is_one_line_and_leaves_no_folder(tmp_path):
    pytest.importorskip("apache_beam")
    out = tmp_path / "segmented"
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "segment_folder.py"), "--runner", "beam", "-i", "gs://BUCKET/photos/**/*.jpg",
         "-o", str(out), "--model-path", "gs://BUCKET/models/selfie_segmentation.tflite", "--json",
         "--beam-options=--runner=DataflowRunner --project=PROJECT --region=europe-west1 "
         "--temp_location=gs://BUCKET/tmp --setup_file=./pyproject.toml"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("segkit: error: --beam-options: Invalid GCS bucket (gs://BUCKET/tmp)")
    assert "Invalid Project ID (PROJECT)" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []
