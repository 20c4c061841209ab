"""Inputs that are not files: stdin and http(s) URLs, read with the files' limits; each failure
one line naming the URL. Every URL here is a loopback server (tests/fixtures/http_server.py)."""
import socket

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from fixtures.http_server import closed_port_url, serve_folder
from segkit.io.sources import read_image
from segkit.io.streams import is_stream, max_bytes, read_stream_frame, stream_name

PHOTO = REPO / "images" / "000000519208.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_folder(tmp_path_factory.mktemp("www")) as srv:
        yield srv


def _problem(frame):
    assert frame.image is None and frame.error is not None
    return str(frame.error)


def test_a_url_is_fetched_and_decoded_as_the_file_is(server):
    url = server.put("photos/a.jpg", PHOTO.read_bytes())
    frame = read_stream_frame(url, stream_name(url))
    assert frame.error is None and frame.name == "a"
    np.testing.assert_array_equal(frame.image, read_image(PHOTO))


@pytest.mark.parametrize("spec, stream", [("-", True), ("https://x.org/a.jpg", True), ("HTTP://x/a", True),
                                          ("https:/x.org/a.jpg", False), ("photo.jpg", False)])
def test_what_counts_as_a_stream(spec, stream):
    assert is_stream(spec) is stream


def test_stream_names():
    assert stream_name("-") == "stdin"
    assert stream_name("https://x.org/img/cat%20photo.png?size=2") == "cat_20photo"
    assert stream_name("https://x.org/") == "download"


def test_http_errors_are_one_line_naming_the_url(server):
    url = server.url("missing.jpg")
    assert _problem(read_stream_frame(url, "m")) == f"{url}: HTTP 404 File not found"
    refused = closed_port_url("a.jpg")
    assert _problem(read_stream_frame(refused, "a")).startswith(f"{refused}: cannot fetch (")


def test_a_server_that_never_answers_times_out():
    with socket.socket() as s:  # listens, never accepts: the connection opens, no reply comes
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/a.jpg"
        assert _problem(read_stream_frame(url, "a", timeout=0.5)) == f"{url}: no answer within 0.5 s"


def test_a_cut_download_and_a_non_image_are_named(server):
    url = server.put("cut.jpg", PHOTO.read_bytes())
    server.truncate("cut.jpg", 1000)
    assert "download cut short (1,000 of" in _problem(read_stream_frame(url, "cut"))
    page = server.put("page.jpg", b"<html>not found</html>")
    assert _problem(read_stream_frame(page, "page")) == f"{page}: not an image (unknown or unsupported format)"


def test_the_pixel_and_byte_limits_of_files_apply(server):
    small = server.put("small.png", _png(100, 100))
    assert "100x100 = 10,000 pixels, over the limit of 5,000" in _problem(read_stream_frame(small, "s", 5000))
    big = server.put("big.bin", b"\0" * (max_bytes(1) + 10))
    assert "bytes, over the limit of" in _problem(read_stream_frame(big, "b", 1))  # refused on Content-Length
    server.no_length("big.bin")
    assert "over 1,048,579 bytes" in _problem(read_stream_frame(big, "b", 1))  # stops reading at the cap


def _png(w, h):
    import io

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()
