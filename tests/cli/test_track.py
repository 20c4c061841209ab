"""--track and frame-folder sources on the command line (segment_webcam.py)."""
from __future__ import annotations

import re

import cv2
import pytest

from conftest import shared_path
from fixtures.clips import SAMPLE, count_frames
from fixtures.commands import webcam
from fixtures.moving_shapes import write_frames


@pytest.fixture(scope="module")
def photo_frames(tmp_path_factory):
    """6 frames panning over the sample photo of a person (the default person model finds them)."""
    folder = tmp_path_factory.mktemp("photo_frames")
    photo = cv2.imread(str(SAMPLE))
    h, w = photo.shape[:2]
    for i in range(6):
        crop = photo[:, 8 * i:8 * i + min(w - 40, int(h * 4 / 3))]
        cv2.imwrite(str(folder / f"frame_{i:06d}.jpg"), cv2.resize(crop, (160, 120), interpolation=cv2.INTER_AREA))
    return folder


def test_a_frame_folder_with_the_default_person_model_is_tracked_into_a_video(photo_frames, tmp_path,
                                                                                capsys, monkeypatch):
    out = tmp_path / "tracked.mp4"
    code, stdout, err = webcam(capsys, monkeypatch, "--source", photo_frames, "--track", "--output", out, "--no-show")
    assert code == 0, err
    summary = [ln for ln in stdout.splitlines() if "frames done" in ln][-1]
    assert "6 frames done, 0 skipped, 0 failed" in summary and "stopped: end of stream" in summary
    assert int(re.search(r"(\d+) tracks?\b", summary).group(1)) >= 1
    assert count_frames(out) == 6


def test_a_printf_pattern_is_a_source(photo_frames, capsys, monkeypatch):
    code, stdout, err = webcam(capsys, monkeypatch, "--source", photo_frames / "frame_%06d.jpg", "--no-show",
                               "--max-frames", 2)
    assert code == 0, err
    assert "2 frames done" in stdout


def test_an_empty_folder_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    code, stdout, err = webcam(capsys, monkeypatch, "--source", tmp_path / "empty", "--track", "--no-show")
    assert code == 1 and err.count("\n") == 1 and "no frames" in err and "Traceback" not in err


def test_an_unreadable_frame_in_the_middle_is_one_line_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    paths = write_frames(tmp_path / "frames", 6, ext=".jpg")
    paths[3].write_text("this is not a JPEG")
    (tmp_path / "frames" / "README.txt").write_text("a file that is not a frame")
    code, stdout, err = webcam(capsys, monkeypatch, "--source", tmp_path / "frames", "--track", "--no-show")
    assert code == 3  # some frames failed
    lines = [ln for ln in err.splitlines() if ln.startswith("segkit: error:")]
    assert len(lines) == 1 and "00003.jpg" in lines[0] and "not an image" in lines[0]
    assert "5 frames done, 0 skipped, 1 failed" in stdout


def test_realtime_is_refused_for_a_frame_folder(photo_frames, capsys, monkeypatch):
    code, _, err = webcam(capsys, monkeypatch, "--source", photo_frames, "--realtime", "--no-show")
    assert code == 2 and "--realtime" in err


def test_davis_dog_with_the_int8_yolo_is_one_track(tmp_path, capsys, monkeypatch, yolo_int8):
    """The issue's command (without --save-mots), on the first frames of a real DAVIS sequence."""
    dog = shared_path("davis2016", "JPEGImages", "480p", "dog")
    code, stdout, err = webcam(capsys, monkeypatch, "--source", dog, "--model", "yolov5s_seg_coco_int8",
                               "--classes", "dog", "--track", "--no-show", "--no-download", "--max-frames", 6)
    assert code == 0, err
    summary = [ln for ln in stdout.splitlines() if "frames done" in ln][-1]
    assert "6 frames done" in summary and "; 1 track;" in summary


def test_a_video_file_is_tracked(tmp_path, capsys, monkeypatch):
    from fixtures.clips import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 8)
    code, stdout, err = webcam(capsys, monkeypatch, "--source", clip, "--track", "--no-show")
    assert code == 0, err
    summary = [ln for ln in stdout.splitlines() if "frames done" in ln][-1]
    assert "8 frames done" in summary and re.search(r"; \d+ tracks?;", summary) and "track " in summary
