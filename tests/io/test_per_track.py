"""--per-track: one cut-out clip per track, short tracks skipped, bounded, resumable in folders."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from segkit.errors import UsageError
from segkit.io.per_track import ClipCutter, PerTrackClips, clip_background
from segkit.io.sources import Frame
from segkit.segmentation import Segmentation

H, W = 64, 96


def scene(t: int, tracks: dict[int, tuple[int, int]]):
    """A grey frame with a red square per track (track id -> (class id, x))."""
    image = np.full((H, W, 3), 90, np.uint8)
    masks = []
    for tid, (cid, x) in tracks.items():
        m = np.zeros((H, W), bool)
        m[16:48, x:x + 24] = True
        image[m] = (220, 30, 30)
        masks.append(m)
    n = len(tracks)
    seg = Segmentation(H, W, masks=np.stack(masks) if n else np.zeros((0, H, W), bool),
                       boxes=np.zeros((n, 4), np.float32),
                       class_ids=np.array([c for c, _ in tracks.values()], np.int32),
                       scores=np.full(n, 0.9, np.float32), track_ids=np.array(list(tracks), np.int64))
    return image, seg


def frames_of(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def timeline():
    """person #1 in frames 0-13, dog #2 in frames 0-2 only, person #5 in 0-4 and again in 40-51."""
    for t in range(52):
        tracks = {}
        if t < 14:
            tracks[1] = (1, 2 + t)
        if t < 3:
            tracks[2] = (18, 60)
        if t < 5 or t >= 40:
            tracks[5] = (1, 40)
        yield t, scene(t, tracks)


def test_clips_per_track_short_ones_skipped_and_a_returning_track_gets_a_second_clip(tmp_path):
    cutter = ClipCutter(tmp_path / "clips", clip_background(None), fps=10, min_frames=5, idle_frames=10)
    for t, (image, seg) in timeline():
        cutter.add(t, image, seg)
        assert len(cutter.clips) <= 3 and all(len(c.pending) < 5 for c in cutter.clips.values())
    written = cutter.finish()
    assert [p.name for p in written] == ["person_1.mp4", "person_5.mp4", "person_5_2.mp4"]
    assert cutter.skipped == 1  # the dog, seen in 3 frames
    clip = frames_of(tmp_path / "clips" / "person_1.mp4")
    assert len(clip) == 14 and len(frames_of(tmp_path / "clips" / "person_5_2.mp4")) == 12
    first = clip[0].astype(int)
    assert first[30, 10].tolist() == pytest.approx([220, 30, 30], abs=25)  # the object kept ...
    assert first[5, 80].max() < 20 and first[60, 5].max() < 20             # ... the rest black
    assert not list((tmp_path / "clips").glob(".*"))  # no temp file left


def test_transparent_is_refused_for_videos():
    with pytest.raises(UsageError, match="alpha"):
        clip_background("transparent")


def test_folder_run_cuts_clips_at_the_end_in_folder_order(tmp_path):
    """A folder run killed halfway and resumed gives the clips of an uninterrupted run."""
    from segkit.io.atomic import write_image

    src = tmp_path / "frames"
    items, segs = [], {}
    for t, (image, seg) in list(timeline())[:14]:
        p = src / f"{t:05d}.png"
        write_image(p, image)
        items.append((p, f"{t:05d}"))
        segs[t] = seg
    out = tmp_path / "out"
    for part in (range(0, 14, 2), range(1, 14, 2)):  # first run: even frames, killed; then the rest
        sink = PerTrackClips(out / "clips", "white", fps=10, items=items, state_dir=out, min_frames=5)
        sink.open(None)
        for t in part:
            sink.write(Frame(None, items[t][1], items[t][0], index=t), segs[t])
        sink.close(part.start == 1)
    assert [p.name for p in sink.written] == ["person_1.mp4", "person_5.mp4"]
    person = frames_of(out / "clips" / "person_1.mp4")
    assert len(person) == 14
    # in order: the square moves right one pixel a frame
    xs = [int(np.flatnonzero(f[30, :, 1] < 120)[0]) for f in person]
    assert xs == sorted(xs) and xs[-1] - xs[0] == 13


@pytest.mark.parametrize("spec", ["black", "#10a0f0", "blur:3"])
def test_a_clip_frame_is_the_cutout_of_its_object(spec):
    """Colour backgrounds take a faster path than render.cutout: the same picture."""
    from segkit.render import cutout

    image, seg = scene(0, {1: (1, 10), 2: (1, 50)})
    image = image + np.random.default_rng(0).integers(0, 20, image.shape, dtype=np.uint8)  # texture
    cutter = ClipCutter("unused", clip_background(spec), fps=10)
    for m in seg.masks:
        assert (cutter._picture(image, m) == cutout(image, m, clip_background(spec))).all()
