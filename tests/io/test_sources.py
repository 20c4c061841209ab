import numpy as np
import pytest
from PIL import Image

from segkit.errors import InputError
from segkit.io.sources import expand_inputs, read_frame, read_image


@pytest.fixture
def photo(tmp_path):
    a = np.zeros((30, 50, 3), np.uint8)
    a[:, :25] = (255, 0, 0)  # left half red: orientation is checkable
    p = tmp_path / "photo.jpg"
    Image.fromarray(a).save(p, quality=95)
    return p


def test_reads_rgb(photo):
    img = read_image(photo)
    assert img.shape == (30, 50, 3) and img.dtype == np.uint8
    assert img[15, 5, 0] > 200 and img[15, 45, 0] < 60


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,problem", [
    (lambda d: d / "missing.jpg", "no such file"),
    (lambda d: d, "is a directory"),
    (lambda d: _write(d / "empty.jpg", b""), "empty file"),
    (lambda d: _write(d / "notes.jpg", b"hello"), "not an image"),
])
def test_bad_inputs_name_the_file_and_problem(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputError) as e:
        read_image(path)
    assert str(e.value).startswith(str(path)) and problem in str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_jpeg_is_an_error_not_a_grey_picture(photo, tmp_path):
    data = photo.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(cut)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (2000, 2000)).save(p)
    with pytest.raises(InputError, match="over the limit"):
        read_image(p, max_pixels=1_000_000)


def test_grayscale_rgba_palette_and_16bit_become_rgb8(tmp_path):
    cases = {
        "gray.png": Image.new("L", (8, 6), 100),
        "rgba.png": Image.new("RGBA", (8, 6), (10, 20, 30, 0)),
        "pal.png": Image.new("P", (8, 6), 3),
        "deep.png": Image.fromarray(np.full((6, 8), 40000, np.uint16)),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        img = read_image(tmp_path / name)
        assert img.shape == (6, 8, 3) and img.dtype == np.uint8, name
    assert read_image(tmp_path / "gray.png")[0, 0].tolist() == [100, 100, 100]
    assert read_image(tmp_path / "deep.png")[0, 0, 0] == 40000 >> 8


def test_exif_rotation_is_applied(photo, tmp_path):
    im = Image.open(photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rotated = tmp_path / "rot.jpg"
    im.save(rotated, exif=exif, quality=95)
    img = read_image(rotated)
    assert img.shape == (50, 30, 3)  # shown portrait, as a viewer does
    assert img[5, 15, 0] > 200 and img[45, 15, 0] < 60  # red half now on top


def test_expand_folder_recursive_keeps_subpaths_apart(tmp_path, photo):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / "x.jpg").write_bytes(photo.read_bytes())
    (tmp_path / "in" / "readme.txt").write_text("not an image")
    items = expand_inputs([str(tmp_path / "in")], recursive=True)
    assert [n for _, n in items] == ["a/x", "b/x"]
    assert expand_inputs([str(tmp_path / "in")]) == []
    globbed = expand_inputs([str(tmp_path / "in" / "*" / "*.jpg")])
    assert len(globbed) == 2 and len({n for _, n in globbed}) == 2


def test_frames_carry_errors_instead_of_stopping(tmp_path, photo):
    frames = [read_frame(item) for item in [(tmp_path / "nope.jpg", "nope"), (photo, "photo")]]
    assert frames[0].error is not None and frames[0].image is None
    assert frames[1].error is None and frames[1].image.shape == (30, 50, 3)


def test_opencv_decodes_plain_jpeg_and_png_pixel_for_pixel_like_pillow(tmp_path):
    """The GIL-free fast path gives exactly Pillow's pixels, and steps aside for what only
    Pillow handles (truncation, EXIF rotation, palettes)."""
    import io

    from conftest import REPO
    from segkit.io.sources import _decode_with_opencv, decode_image_bytes

    jpeg = (REPO / "images" / "000000519208.jpg").read_bytes()
    png_path = tmp_path / "x.png"
    Image.open(io.BytesIO(jpeg)).save(png_path)
    cases = {"jpeg": jpeg, "png": png_path.read_bytes()}
    for name, data in cases.items():
        assert _decode_with_opencv(Image.open(io.BytesIO(data)), data) is not None, name
        want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(decode_image_bytes(data, name), want)
    cut = jpeg[: len(jpeg) // 2]
    assert _decode_with_opencv(Image.open(io.BytesIO(cut)), cut) is None
    pal = tmp_path / "p.png"
    Image.new("P", (8, 6), 3).save(pal)
    assert _decode_with_opencv(Image.open(pal), pal.read_bytes()) is None


def test_image_files_prepare_runs_on_the_decode_threads(tmp_path, photo):
    """``prepare`` (the model's work ahead) runs after decoding, on the read threads; a failing
    prepare leaves nothing prepared (the model does the work itself) and a bad file is not
    prepared at all."""
    import threading

    from segkit.io.sources import ImageFiles

    (tmp_path / "bad.jpg").write_bytes(b"")
    seen = []

    def prepare(image):
        seen.append(threading.current_thread().name)
        if len(seen) == 2:
            raise RuntimeError("no")
        return image.shape

    items = [(photo, "a"), (tmp_path / "bad.jpg", "bad"), (photo, "b"), (photo, "c")]
    with ImageFiles(items, workers=1, prepare=prepare) as source:
        got = [source.next() for _ in items]
    assert [f.name for f in got] == ["a", "bad", "b", "c"]
    assert got[1].error is not None and got[1].prepared is None
    assert got[0].prepared == got[0].image.shape and got[2].prepared is None
    assert got[3].prepared == got[3].image.shape
    assert len(seen) == 3 and all(n.startswith("segkit-read") for n in seen)
