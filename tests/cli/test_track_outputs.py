"""--save-mots and --per-track on the command line (segment_webcam.py; segment_folder.py with --track)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conftest import shared_path
from fixtures.clips import SAMPLE
from fixtures.commands import folder_run, webcam


def read_mots(path):
    rows = []
    for line in path.read_text().splitlines():
        frame, tid, cls, h, w, rle = line.split(" ")
        mask = mask_utils.decode({"size": [int(h), int(w)], "counts": rle.encode()}).astype(bool)
        rows.append((int(frame), int(tid), int(cls), mask))
    return rows


@pytest.mark.parametrize("flag", ["--save-mots", "--per-track"])
def test_tracked_outputs_without_track_are_refused_in_one_line(flag, tmp_path, capsys, monkeypatch):
    code, _, err = webcam(capsys, monkeypatch, "--source", tmp_path, flag, tmp_path / "x.txt", "--no-show")
    assert code == 2 and err.count("\n") == 1 and f"{flag} needs track ids: add --track" in err
    assert list(tmp_path.iterdir()) == []


def test_person_frames_give_a_mots_file_and_a_clip_per_track(tmp_path, capsys, monkeypatch):
    """The default person model on 8 frames panning over a photo of a person."""
    frames = tmp_path / "frames"
    frames.mkdir()
    photo = cv2.imread(str(SAMPLE))
    h, w = photo.shape[:2]
    for i in range(8):
        crop = photo[:, 8 * i:8 * i + min(w - 64, int(h * 4 / 3))]
        cv2.imwrite(str(frames / f"{i:05d}.jpg"), cv2.resize(crop, (160, 120), interpolation=cv2.INTER_AREA))
    code, stdout, err = webcam(capsys, monkeypatch, "--source", frames, "--track", "--no-show",
                               "--min-track-frames", 4, "--save-mots", tmp_path / "out" / "tracks.txt",
                               "--per-track", tmp_path / "clips")
    assert code == 0, err
    rows = read_mots(tmp_path / "out" / "tracks.txt")
    assert rows and {r[2] for r in rows} == {2}  # people are MOTS pedestrians
    assert {r[0] for r in rows} <= set(range(1, 9)) and max(r[0] for r in rows) == 8
    assert all(r[3].shape == (120, 160) and r[3].any() for r in rows)
    per_frame = {}
    for frame, tid, _, mask in rows:
        assert not (per_frame.get(frame, np.zeros((120, 160), bool)) & mask).any()  # no overlaps
        per_frame[frame] = per_frame.get(frame, np.zeros((120, 160), bool)) | mask
    long_tracks = {t for t in {r[1] for r in rows} if sum(r[1] == t for r in rows) >= 4}
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == sorted(f"person_{t}.mp4" for t in long_tracks)
    assert "MOTS" in stdout and "per-track clip" in stdout


def test_the_issues_davis_command_writes_a_mots_file(tmp_path, capsys, monkeypatch, yolo_int8):
    """segment_webcam --source DAVIS/dog --model yolov5s_seg_coco_int8 --classes dog --track
    --save-mots dog.txt --no-show, on its first frames."""
    dog = shared_path("davis2016", "JPEGImages", "480p", "dog")
    monkeypatch.chdir(tmp_path)
    code, stdout, err = webcam(capsys, monkeypatch, "--source", dog, "--model", "yolov5s_seg_coco_int8",
                               "--classes", "dog", "--track", "--save-mots", "dog.txt", "--no-show",
                               "--no-download", "--max-frames", 4)
    assert code == 0, err
    rows = read_mots(tmp_path / "dog.txt")
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert {r[1] for r in rows} == {1} and {r[2] for r in rows} == {118}  # one dog track, 100 + COCO 18
    gt = cv2.imread(str(shared_path("davis2016", "Annotations", "480p", "dog", "00000.png")), 0) > 0
    first = rows[0][3]
    assert first.shape == (480, 854) and (first & gt).sum() / (first | gt).sum() > 0.5


# ----------------------------------------------------------------------------- segment_folder --track
@pytest.fixture(scope="module")
def people_frames(tmp_path_factory):
    """12 frames: the sample photo of people sliding right over a black frame."""
    folder = tmp_path_factory.mktemp("people_frames")
    patch = cv2.resize(cv2.imread(str(SAMPLE)), (120, 150), interpolation=cv2.INTER_AREA)
    for i in range(12):
        im = np.zeros((150, 240, 3), np.uint8)
        im[:, 4 * i:120 + 4 * i] = patch
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), im)
    return folder


def test_folder_run_resumed_writes_the_mots_file_and_clips_of_an_uninterrupted_run(people_frames, tmp_path, capsys):
    import shutil

    args = ["-i", people_frames, "--track", "--no-visual", "--save-mots", "tracks.txt", "--per-track",
            tmp_path / "{}" / "clips", "--min-track-frames", 3, "--quiet"]
    whole = tmp_path / "whole"
    code, _, err = folder_run(capsys, "-o", whole, *[str(a).format("whole") for a in args])
    assert code == 0, err
    rows = read_mots(whole / "tracks.txt")  # a bare name goes into the output folder, as --json's
    assert rows and sorted({r[0] for r in rows}) == list(range(1, 13)) and {r[2] for r in rows} == {2}
    clips = sorted(p.name for p in (whole / "clips").iterdir())
    assert clips and all(c.startswith("person_") for c in clips)

    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    shutil.rmtree(resumed / "clips")
    (resumed / "tracks.txt").unlink()
    for name in ("0003", "0008"):  # killed before these frames were complete
        for p in [resumed / ".segkit" / "mots" / f"{name}.txt", resumed / ".segkit" / "tracks" / f"{name}.txt",
                  resumed / ".segkit" / "tracker" / f"{name}.npz"]:
            p.unlink()
    code, _, err = folder_run(capsys, "-o", resumed, *[str(a).format("resumed") for a in args])
    assert code == 0, err
    assert (resumed / "tracks.txt").read_text() == (whole / "tracks.txt").read_text()
    assert sorted(p.name for p in (resumed / "clips").iterdir()) == clips
    from fixtures.clips import count_frames
    assert [count_frames(resumed / "clips" / c) for c in clips] == [count_frames(whole / "clips" / c) for c in clips]


def test_folder_run_refuses_mots_without_track(people_frames, tmp_path, capsys):
    code, _, err = folder_run(capsys, "-i", people_frames, "-o", tmp_path / "o", "--save-mots", "t.txt")
    assert code == 2 and err.count("\n") == 1 and "--save-mots needs track ids: add --track" in err
    assert not (tmp_path / "o").exists()
