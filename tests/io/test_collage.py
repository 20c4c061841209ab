"""Collages and animations: panel contents and sizes, where masks come from, GIF frame count
and timing from the manifest fps, skipping, size limits, MP4 read-back, bad frame folders."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from segkit.io.animation import gif_durations, write_animation
from segkit.io.collage import collage_frames, list_frames, parse_bytes, parse_layout, parse_resize, read_mask
from segkit.errors import InputError, UsageError
from segkit.io.frames import FrameRecord, Manifest, write_manifest
from segkit.render import Background, cutout
from segkit.io.atomic import write_image

W, H, N, FPS = 40, 30, 6, 5.0


def original(i: int) -> np.ndarray:
    """Distinct frames (identical consecutive GIF frames would be merged by Pillow)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (30 * i, 100, 200 - 20 * i)
    img[5:15, 3 * i:3 * i + 10] = (250, 250, 0)
    return img


def mask(i: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[8:25, 10 + i:25 + i] = True
    return m


@pytest.fixture()
def frames_dir(tmp_path):
    d = tmp_path / "frames"
    recs = []
    for i in range(N):
        name = f"frame_{i:06d}.png"
        write_image(d / name, original(i))
        recs.append(FrameRecord(i, 2 * i, 2 * i / 10, name))
    write_manifest(d, Manifest(fps=FPS, width=W, height=H, frames=recs))
    return d


def segment_dir(tmp_path, background: str, save_masks: bool):
    """What segment_folder.py writes: NAME.png cut-out (+ NAME_masks/000_person.png)."""
    d = tmp_path / f"seg_{background}_{save_masks}"
    bg = Background("transparent") if background == "transparent" else Background("color", (255, 255, 255))
    for i in range(N):
        name = f"frame_{i:06d}"
        write_image(d / f"{name}.png", cutout(original(i), mask(i), bg))
        if save_masks:
            write_image(d / f"{name}_masks" / "000_person.png", mask(i).astype(np.uint8) * 255)
    return d


def test_collage_is_three_frames_wide_with_the_right_panels(tmp_path, frames_dir):
    seg = segment_dir(tmp_path, "white", save_masks=True)
    out = list(collage_frames(list_frames(frames_dir), parse_layout("original,mask,cutout"), seg))
    assert len(out) == N
    for i, f in enumerate(out):
        assert f.shape == (H, 3 * W, 3) and f.dtype == np.uint8
        np.testing.assert_array_equal(f[:, :W], original(i))
        np.testing.assert_array_equal(f[:, W:2 * W, 0] == 255, mask(i))
        cut = f[:, 2 * W:]
        assert (cut[~mask(i)] == 255).all()  # background is white where the mask says so
        np.testing.assert_array_equal(cut[mask(i)], original(i)[mask(i)])


def test_mask_from_transparent_cutout_alpha_and_cutout_on_white(tmp_path, frames_dir):
    seg = segment_dir(tmp_path, "transparent", save_masks=False)
    np.testing.assert_array_equal(read_mask(seg, "frame_000002"), mask(2))
    f = next(collage_frames(list_frames(frames_dir), ["mask", "cutout"], seg))
    assert f.shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(f[:, :W, 0] == 255, mask(0))
    assert (f[:, W:][~mask(0)] == 255).all()


def test_mask_needs_masks_or_alpha(tmp_path, frames_dir):
    seg = segment_dir(tmp_path, "white", save_masks=False)
    with pytest.raises(InputError, match=r"frame_000000\.png: no alpha channel and no frame_000000_masks/"):
        next(collage_frames(list_frames(frames_dir), ["mask"], seg))


def test_empty_masks_folder_is_an_empty_mask(tmp_path):
    seg = tmp_path / "seg"
    write_image(seg / "a.png", np.full((H, W, 3), 255, np.uint8))
    (seg / "a_masks").mkdir()
    m = read_mask(seg, "a")
    assert m.shape == (H, W) and not m.any()


def test_missing_segmented_frame_is_named(tmp_path, frames_dir):
    seg = segment_dir(tmp_path, "white", save_masks=True)
    (seg / "frame_000003.png").unlink()
    with pytest.raises(InputError, match=r"frame_000003\.png: missing"):
        list(collage_frames(list_frames(frames_dir), ["original", "cutout"], seg))
    with pytest.raises(UsageError, match="--segmented"):
        next(collage_frames(list_frames(frames_dir), ["original", "mask"], None))


def test_gif_frame_count_and_duration_from_manifest_fps(tmp_path, frames_dir):
    seq = list_frames(frames_dir)
    assert seq.fps == FPS
    out = tmp_path / "out" / "a.gif"
    res = write_animation(collage_frames(seq, ["original"]), out, seq.fps)
    assert (res.frames, res.width, res.height) == (N, W, H)
    with Image.open(out) as im:
        assert im.n_frames == N and im.size == (W, H)
        assert im.info["loop"] == 0  # loops forever by default
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
    assert durations == [200] * N  # 5 fps
    assert [p.name for p in out.parent.iterdir()] == ["a.gif"]  # no temp file left


def test_gif_skip_keeps_the_duration_and_loop_count(tmp_path, frames_dir):
    seq = list_frames(frames_dir)
    out = tmp_path / "b.gif"
    write_animation(collage_frames(seq, ["original"], step=2), out, FPS / 2, loop=1, step=2)
    with Image.open(out) as im:
        assert im.n_frames == 3 and im.info["duration"] == 400
        assert "loop" not in im.info  # plays once
        im.seek(1)
        # the second GIF frame is source frame 2, colours kept by the adaptive palette
        np.testing.assert_allclose(np.asarray(im.convert("RGB"), float), original(2), atol=4)


def test_gif_max_size_drops_frames_until_it_fits(tmp_path):
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(12)]  # ~ incompressible
    full = write_animation(noisy, tmp_path / "full.gif", 10.0)
    limit = full.bytes // 3
    res = write_animation(noisy, tmp_path / "small.gif", 10.0, max_bytes=limit)
    assert res.bytes <= limit and (tmp_path / "small.gif").stat().st_size == res.bytes
    assert res.frames < 12 and res.step > 1
    assert res.frames / res.fps == pytest.approx(12 / 10.0, rel=0.35)  # about as long as before
    with pytest.raises(UsageError, match="one frame alone"):
        write_animation(noisy, tmp_path / "tiny.gif", 10.0, max_bytes=100)
    assert not (tmp_path / "tiny.gif").exists()


def test_gif_durations_stay_on_real_time():
    d = gif_durations(30, 30 / 4.004)  # carphone --every 4: 133.5 ms a frame
    assert set(d) == {130, 140} and sum(d) == 4000
    assert gif_durations(3, 5.0) == [200, 200, 200]


def test_mp4_opens_with_the_right_frame_count(tmp_path, frames_dir):
    seg = segment_dir(tmp_path, "white", save_masks=True)
    out = tmp_path / "c.mp4"
    res = write_animation(collage_frames(list_frames(frames_dir), ["original", "mask", "cutout"], seg), out, FPS)
    assert res.frames == N
    cap = cv2.VideoCapture(str(out))
    try:
        assert cap.isOpened()
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (3 * W, H)
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    assert n == N
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["c.mp4"]


def test_resize_applies_to_each_panel(frames_dir):
    f = next(collage_frames(list_frames(frames_dir), ["original", "original"], resize=parse_resize("20x")))
    assert f.shape == (15, 40, 3)  # two 40x30 panels, each 20 wide
    # the longest side too: '--resize 480' on a 3-panel collage is not a 480-wide strip
    f = next(collage_frames(list_frames(frames_dir), ["original"] * 3, resize=parse_resize("80")))
    assert f.shape == (60, 240, 3)


@pytest.mark.parametrize("spec, size", [("320x240", (320, 240)), ("320x", (320, 120)), ("x60", (160, 60)),
                                        ("0.5", (320, 120)), ("25%", (160, 60)), ("320", (320, 120)),
                                        ("1280", (1280, 480))])
def test_parse_resize(spec, size):
    assert parse_resize(spec)(640, 240) == size


@pytest.mark.parametrize("spec", ["", "x", "0", "-1", "abc", "0x10", "0.0"])
def test_parse_resize_rejects(spec):
    with pytest.raises(UsageError):
        parse_resize(spec)


def test_parse_bytes_and_layout():
    assert parse_bytes("2M") == 2 * 1024 ** 2 and parse_bytes("500k") == 512000 and parse_bytes("123") == 123
    with pytest.raises(UsageError):
        parse_bytes("lots")
    assert parse_layout("original, cutout") == ["original", "cutout"]
    with pytest.raises(UsageError, match="panels are"):
        parse_layout("original,depth")


def test_folder_without_manifest_sorts_naturally(tmp_path):
    for name in ["f10.png", "f2.png", "f1.png"]:
        write_image(tmp_path / name, original(0))
    (tmp_path / "f1_masks").mkdir()  # segment_folder's mask folders are not frames
    seq = list_frames(tmp_path)
    assert [n for n, _ in seq.items] == ["f1", "f2", "f10"] and seq.fps is None


def test_bad_frame_folders(tmp_path, frames_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no frames in this folder"):
        list_frames(tmp_path / "empty")
    with pytest.raises(InputError, match="no such folder"):
        list_frames(tmp_path / "nope")
    # a frame of another size is named
    write_image(frames_dir / "frame_000004.png", np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(InputError, match=r"frame_000004\.png: frame is 40x32 but .*frame_000000\.png is 40x30"):
        list(collage_frames(list_frames(frames_dir), ["original"]))
    # a frame the manifest lists but that is gone
    (frames_dir / "frame_000005.png").unlink()
    with pytest.raises(InputError, match=r"frame_000005\.png: listed in manifest.json but missing"):
        list_frames(frames_dir)
