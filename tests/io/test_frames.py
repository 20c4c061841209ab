"""Frame extraction: which frames --every/--fps/--start/--end/--max-frames keep, their names,
their manifest timestamps, and one-line errors for videos that cannot be read."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segkit.errors import InputError, UsageError
from segkit.io.frames import (MANIFEST_NAME, Selection, extract_frames, parse_time, read_manifest,
                           write_manifest)
from segkit.io.sources import read_image

FPS, N, W, H = 10.0, 40, 64, 48


def frame_image(i: int) -> np.ndarray:
    """Source frame i shows i in binary as black/white 16x16 blocks (robust to mp4v's losses),
    so an extracted frame tells which source frame it is."""
    img = np.zeros((H, W, 3), np.uint8)
    for bit in range(6):
        y, x = divmod(bit, 4)
        img[16 * y:16 * y + 16, 16 * x:16 * x + 16] = 255 if i >> bit & 1 else 0
    return img


def frame_number(img: np.ndarray) -> int:
    return sum(1 << bit for bit in range(6)
               if img[16 * (bit // 4) + 4:16 * (bit // 4) + 12, 16 * (bit % 4) + 4:16 * (bit % 4) + 12].mean() > 128)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """40 frames at 10 fps (4 s), mp4v, frame i showing its number."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    assert w.isOpened()
    for i in range(N):
        w.write(frame_image(i))
    w.release()
    return path


def source_frames_seen(folder, manifest):
    """Decode which source frame each written file shows."""
    return [frame_number(read_image(folder / r.file)) for r in manifest.frames]


def run(clip, tmp_path, **sel):
    out = tmp_path / "frames"
    return out, extract_frames(clip, out, Selection(**sel))


def test_all_frames_with_manifest_and_sorted_names(clip, tmp_path):
    out, m = run(clip, tmp_path)
    files = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert len(files) == N == len(m.frames)
    assert files == [r.file for r in m.frames]  # names sort in playing order
    assert files[0] == "frame_000000.png" and files[-1] == "frame_000039.png"
    assert (m.width, m.height, m.fps, m.source_fps, m.source_frames) == (W, H, FPS, FPS, N)
    assert source_frames_seen(out, m) == list(range(N))
    # the manifest on disk reads back the same
    back = read_manifest(out)
    assert back == m
    assert json.loads((out / MANIFEST_NAME).read_text())["frames"][3] == \
        {"index": 3, "source_frame": 3, "timestamp": 0.3, "file": "frame_000003.png"}


def test_every(clip, tmp_path):
    out, m = run(clip, tmp_path, every=4)
    assert [r.source_frame for r in m.frames] == list(range(0, N, 4))
    assert [r.timestamp for r in m.frames] == pytest.approx([i * 0.4 for i in range(10)])
    assert [r.index for r in m.frames] == list(range(10))
    assert m.fps == pytest.approx(2.5)  # real time: 10 frames over 4 s
    assert source_frames_seen(out, m) == list(range(0, N, 4))


def test_fps_resamples_on_a_regular_grid(clip, tmp_path):
    _, m = run(clip, tmp_path, fps=2)
    assert [r.source_frame for r in m.frames] == [0, 5, 10, 15, 20, 25, 30, 35]
    _, m3 = run(clip, tmp_path / "b", fps=3)
    # nearest frames to 0, 1/3, 2/3, 1 ... s
    assert [r.source_frame for r in m3.frames][:4] == [0, 3, 7, 10]
    assert m3.fps == 3
    # asking for more than the source has keeps every frame once
    _, m_all = run(clip, tmp_path / "c", fps=25)
    assert len(m_all.frames) == N and m_all.fps == FPS


def test_start_end_and_max_frames(clip, tmp_path):
    out, m = run(clip, tmp_path, start=1.0, end=2.0)  # end is exclusive
    assert [r.source_frame for r in m.frames] == list(range(10, 20))
    assert m.frames[0].timestamp == pytest.approx(1.0) and m.frames[0].file == "frame_000000.png"
    assert source_frames_seen(out, m) == list(range(10, 20))
    _, m = run(clip, tmp_path / "b", start=parse_time("00:00:01.5"), every=5, max_frames=3)
    assert [r.source_frame for r in m.frames] == [15, 20, 25]
    assert [r.timestamp for r in m.frames] == pytest.approx([1.5, 2.0, 2.5])


def test_nothing_in_range_names_the_video(clip, tmp_path):
    with pytest.raises(InputError, match=r"clip\.mp4: no frames between --start and --end \(the video is 4\.00 s"):
        run(clip, tmp_path, start=10)


def test_refuses_a_folder_of_an_earlier_run_unless_overwrite(clip, tmp_path):
    out, _ = run(clip, tmp_path, every=2)  # 20 frames
    with pytest.raises(UsageError, match="earlier run"):
        extract_frames(clip, out, Selection(every=4))
    m = extract_frames(clip, out, Selection(every=4), overwrite=True)
    # stale frames 10..19 of the first run are gone: the folder is exactly the new run
    assert sorted(p.name for p in out.iterdir()) == sorted([r.file for r in m.frames] + [MANIFEST_NAME])


def test_jpg_and_no_temp_files_left(clip, tmp_path):
    out = tmp_path / "j"
    m = extract_frames(clip, out, Selection(max_frames=2), ext="jpg")
    assert [p.name for p in sorted(out.iterdir())] == ["frame_000000.jpg", "frame_000001.jpg", MANIFEST_NAME]
    assert read_image(out / m.frames[1].file).shape == (H, W, 3)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file (0 bytes)"),
    (b"this is a text file, not a video\n", "cannot be decoded as a video"),
])
def test_unreadable_videos(tmp_path, content, problem):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(InputError) as e:
        extract_frames(bad, tmp_path / "out", Selection())
    assert str(e.value).startswith(f"{bad}: {problem}")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_missing_video(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        extract_frames(tmp_path / "nope.mp4", tmp_path / "out", Selection())


@pytest.mark.parametrize("text, seconds", [("12.5", 12.5), ("0", 0.0), ("01:02", 62.0),
                                           ("1:02:03.5", 3723.5), ("00:00:01.5", 1.5)])
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "-1", "1:75", "1::2"])
def test_parse_time_rejects(text):
    with pytest.raises(UsageError):
        parse_time(text)


@pytest.mark.parametrize("kw", [dict(every=0), dict(fps=0), dict(every=2, fps=2),
                                dict(start=3, end=2), dict(max_frames=0)])
def test_bad_selections(kw):
    with pytest.raises(UsageError):
        Selection(**kw)


def test_broken_manifest_is_an_error(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"frames": [{"index": 0}]}')
    with pytest.raises(InputError, match="not a valid frames manifest"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path / "none") is None


def test_manifest_roundtrip_without_timing(tmp_path):
    from segkit.io.frames import FrameRecord, Manifest

    m = Manifest(fps=None, frames=[FrameRecord(0, 0, None, "frame_000000.png")])
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == m
