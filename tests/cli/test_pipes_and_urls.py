"""segment_image.py in a pipe (-i -, -o -), on a URL, and --only-mask: rembg's conveniences.
stdout must carry the image alone, so every message is checked to be on stderr."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fixtures.http_server import serve_folder

SAMPLE = "images/000000519208.jpg"


def run(repo, *args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, str(repo / "bin" / "segment_image.py"), *args], input=stdin,
                          capture_output=True, cwd=cwd or repo, timeout=120)


def test_cat_photo_into_a_transparent_cutout_on_stdout(repo, tmp_path):
    r = run(repo, "-i", "-", "-o", "-", "--background", "transparent",
            stdin=(repo / SAMPLE).read_bytes(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    out = Image.open(io.BytesIO(r.stdout))
    out.load()  # the whole stream is one PNG: nothing before or after it
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == (640, 406)
    assert r.stdout.endswith(b"IEND\xaeB`\x82")
    alpha = np.asarray(out)[..., 3]
    assert alpha[350, 540] > 200 and alpha[200, 60] == 0  # the person kept, the elephant cut away
    err = r.stderr.decode()
    assert "stdin: " in err and "-> stdout" in err and "1 images done" in err
    assert list(tmp_path.iterdir()) == []  # no folder, no file


def test_only_mask_is_one_8bit_channel_and_ext_picks_the_stdout_format(repo, tmp_path):
    r = run(repo, "-i", SAMPLE, "-o", str(tmp_path / "mask.png"), "--only-mask")
    assert r.returncode == 0, r.stderr.decode()
    mask = Image.open(tmp_path / "mask.png")
    assert mask.mode == "L" and mask.size == (640, 406)
    m = np.asarray(mask)
    assert m[350, 540] > 200 and m[200, 60] == 0
    cut = run(repo, "-i", SAMPLE, "-o", str(tmp_path / "cut.png"), "--background", "transparent")
    assert cut.returncode == 0
    np.testing.assert_array_equal(m, np.asarray(Image.open(tmp_path / "cut.png"))[..., 3])  # the cut-out's alpha
    jpg = run(repo, "-i", "-", "-o", "-", "--ext", "jpg", stdin=(repo / SAMPLE).read_bytes())
    assert jpg.returncode == 0 and jpg.stdout[:3] == b"\xff\xd8\xff"
    r = run(repo, "-i", SAMPLE, "--only-mask", "--background", "white")
    assert r.returncode == 2 and b"--only-mask writes the mask instead of the picture: drop --background" in r.stderr


def test_a_url_input_is_fetched_and_named_after_its_file(repo, tmp_path):
    (tmp_path / "www").mkdir()
    with serve_folder(tmp_path / "www") as srv:
        url = srv.put("people/street.jpg", (repo / SAMPLE).read_bytes())
        r = run(repo, "-i", url, "-i", srv.url("gone.jpg"), "-o", str(tmp_path / "out"))
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 3 and err[0] == f"segkit: error: {srv.url('gone.jpg')}: HTTP 404 File not found"
    assert err[1:] == [f"failures: {tmp_path / 'out' / 'failures.jsonl'}"]
    assert (tmp_path / "out" / "street.png").is_file()
    assert f"{url}: " in r.stdout.decode()


@pytest.mark.parametrize("args, problem", [
    (["-i", SAMPLE, "-i", SAMPLE.replace("519208", "183709"), "-o", "-"], "-o - writes one image to stdout: give one input, not 2"),
    (["-i", SAMPLE, "-o", "-", "--save-masks"], "--save-masks need a folder"),
    (["-i", "-", "-i", "-", "-o", "x"], "-i - (stdin) can be given once"),
])
def test_pipe_misuse_is_one_line(repo, args, problem):
    r = run(repo, *args, stdin=b"")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and problem in lines[0], lines
    assert r.stdout == b""


def test_an_empty_stdin_is_a_failed_input_not_a_traceback(repo):
    r = run(repo, "-i", "-", "-o", "-", stdin=b"")
    assert r.returncode == 1 and r.stdout == b""
    assert b"segkit: error: stdin: empty (0 bytes)" in r.stderr and b"Traceback" not in r.stderr
