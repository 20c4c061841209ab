"""segkit.io.frame_folder: a folder of frames in name order, or a printf pattern, as a source."""
from __future__ import annotations

import json

import pytest

from fixtures.moving_shapes import write_frames
from segkit.errors import InputError
from segkit.io.frame_folder import FrameFolder, is_frame_source, list_frames


def test_a_folder_is_read_in_natural_name_order_and_other_files_are_left_out(tmp_path):
    for n in (10, 9, 1):
        write_frames(tmp_path, 1, name=f"f{n}")  # unpadded numbers: f1, f9, f10
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    frames = list_frames(tmp_path)
    assert [(p.name, i) for p, _, i in frames] == [("f1.png", 0), ("f9.png", 1), ("f10.png", 2)]


def test_a_printf_pattern_takes_the_numbers_as_frame_indices(tmp_path):
    write_frames(tmp_path, 4, ext=".jpg")
    (tmp_path / "00002.jpg").unlink()        # a gap: frame 2 missing
    (tmp_path / "00099.png").write_bytes(b"")  # another extension: not matched
    frames = list_frames(str(tmp_path / "%05d.jpg"))
    assert [i for _, _, i in frames] == [0, 1, 3]
    assert is_frame_source(str(tmp_path / "%05d.jpg")) and is_frame_source(str(tmp_path))
    assert not is_frame_source("clip.mp4") and not is_frame_source(0)


@pytest.mark.parametrize("spec,problem", [("empty", "no frames"), ("empty/%04d.png", "no files match"),
                                          ("missing", "no such folder")])
def test_no_frames_is_one_error_naming_the_source(tmp_path, spec, problem):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=problem) as e:
        list_frames(str(tmp_path / spec))
    assert "\n" not in str(e.value)


def test_the_source_hands_out_every_frame_with_its_size_and_the_manifest_fps(tmp_path):
    write_frames(tmp_path, 5)
    (tmp_path / "manifest.json").write_text(json.dumps({"fps": 12.5, "frames": []}))
    with FrameFolder(tmp_path, mirror=True) as src:
        assert (src.total, src.fps, src.width, src.height, src.unit) == (5, 12.5, 160, 90, "frames")
        got = list(src)
    assert [f.index for f in got] == list(range(5)) and src.ended and src.read == 5
    assert got[0].image.shape == (90, 160, 3)
    assert got[0].image[35, 160 - 15].max() == 255  # mirrored: the square at x 10..30 is on the right
