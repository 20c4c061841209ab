"""Hostile clients get a 4xx JSON {"error": ...} in words (never a 500), and the server stays up:
bad uploads, huge bodies, unknown models and classes, server paths, a full queue, clients that
leave mid-upload or mid-response, and a stop while requests are in flight."""
from __future__ import annotations

import io
import signal
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from fixtures.serving import running, start_process


def _post(serve_url, body: bytes, query: str = "") -> httpx.Response:
    return httpx.post(f"{serve_url}/v1/segment{'?' + query if query else ''}", content=body, timeout=60)


def _refused(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    message = r.json()["error"]
    assert all(w in message for w in words), message
    assert "Traceback" not in message
    return message


def _bomb_png() -> bytes:
    """A 12000 x 12000 PNG of one colour (144 Mpix, over the 100 Mpix limit) in a few kB."""
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")
    return buf.getvalue()


def _healthy(serve_url, serve_photo, serve_service=None):
    assert _post(serve_url, serve_photo, "format=mask").status_code == 200
    if serve_service is not None:
        deadline = time.monotonic() + 10
        while serve_service.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert serve_service.in_flight == 0  # every admitted request was let go


def test_bad_uploads_are_refused_in_words(serve_url, serve_photo):
    _refused(_post(serve_url, b"plain text, not a picture"), 415, "not an image")
    _refused(_post(serve_url, b""), 400, "empty")
    _refused(_post(serve_url, serve_photo[: len(serve_photo) // 2]), 422, "truncated")
    bomb = _bomb_png()
    assert len(bomb) < 100_000
    _refused(_post(serve_url, bomb), 413, "144,000,000 pixels", "limit of 100,000,000")
    r = httpx.post(f"{serve_url}/v1/segment", files={"notes": ("a.txt", b"x")}, data={"format": "mask"})
    _refused(r, 415, "not an image")
    r = httpx.post(f"{serve_url}/v1/segment", files={"format": (None, "mask")})  # a form without a file
    _refused(r, 400, "no file")


def test_bad_options_are_refused_in_words(serve_url, serve_photo):
    _refused(_post(serve_url, serve_photo, "model=no_such_model"), 404, "unknown model 'no_such_model'")
    _refused(_post(serve_url, serve_photo, "model=mask_rcnn_inception_v2_coco_2018_01_28"), 404, "not installed")
    _refused(_post(serve_url, serve_photo, "classes=dog"), 400, "classes dog", "cannot produce")
    _refused(_post(serve_url, serve_photo, "classes=unicorn"), 400, "unicorn")
    _refused(_post(serve_url, serve_photo, "threshold=1.5"), 400, "threshold", "outside 0..1")
    _refused(_post(serve_url, serve_photo, "threshold=nan"), 400, "threshold")
    _refused(_post(serve_url, serve_photo, "threshold=abc"), 400, "threshold", "not a number")
    _refused(_post(serve_url, serve_photo, "max_instances=0"), 400, "max_instances")
    _refused(_post(serve_url, serve_photo, "format=gif"), 400, "format")
    _refused(_post(serve_url, serve_photo, "background=blur:1e9&format=cutout"), 400, "blur")
    _refused(_post(serve_url, serve_photo, "background=blur:x&format=cutout"), 400, "background")


def test_no_request_can_name_a_server_path(serve_url, serve_photo, tmp_path):
    secret = tmp_path / "background.png"
    Image.new("RGB", (8, 8), "red").save(secret)
    # models by zoo name only: a path is an unknown model, whatever is there
    _refused(_post(serve_url, serve_photo, "model=../../etc/passwd"), 404, "unknown model")
    _refused(_post(serve_url, serve_photo, f"model={tmp_path}"), 404, "unknown model")
    # a background image is a file on the server: refused without looking at it
    _refused(_post(serve_url, serve_photo, f"background={secret}&format=cutout"), 400, "background")
    # options that name files on the command line do not exist here
    for name in ("model_path", "output", "json", "config", "save_masks"):
        _refused(_post(serve_url, serve_photo, f"{name}={tmp_path}/x"), 400, "unknown parameter", name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["background.png"]
    # the page's static files cannot climb out of their folder
    r = httpx.get(f"{serve_url}/static/../../../../etc/passwd")
    assert r.status_code == 404 and "root:" not in r.text
    r = httpx.get(f"{serve_url}/static/%2e%2e/%2e%2e/serve_service.py")
    assert r.status_code == 404 and "import" not in r.text


def _raw(serve_url) -> socket.socket:
    host, port = urlsplit(serve_url).hostname, urlsplit(serve_url).port
    return socket.create_connection((host, port), timeout=30)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data and b'"}' in data:
            break
    return data


def test_a_200_mb_body_gets_413_without_being_read(serve_service, serve_url, serve_photo):
    # announced: refused on the headers alone, before a byte of the body
    s = _raw(serve_url)
    s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
              b"Content-Length: 209715200\r\n\r\n" + b"\xff" * 65536)
    reply = _read_response(s)
    s.close()
    assert reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply and b"over the limit" in reply
    # not announced (chunked): read up to the limit, then refused; the rest is never sent
    s = _raw(serve_url)
    s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"\0" * (1 << 20))
    sent = 0
    try:
        while sent < 200:
            s.sendall(chunk)
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.shutdown(socket.SHUT_WR) if sent == 200 else None
    reply = _read_response(s)
    s.close()
    assert b"413" in reply.split(b"\r\n", 1)[0], reply[:200]
    assert sent < 200  # the server stopped reading near its 50 MB limit
    _healthy(serve_url, serve_photo, serve_service)


def test_clients_that_leave_mid_upload_or_mid_response(serve_service, serve_url, serve_photo):
    before = _gone(serve_url)
    # mid-upload: half the announced body, then gone
    s = _raw(serve_url)
    s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(serve_photo)
              + serve_photo[: len(serve_photo) // 2])
    time.sleep(0.2)
    s.close()
    # mid-response: a large PNG asked for, the connection closed before reading it
    big = io.BytesIO()
    Image.open(io.BytesIO(serve_photo)).resize((2400, 1520)).save(big, "JPEG")
    for _ in range(3):
        s = _raw(serve_url)
        s.sendall(b"POST /v1/segment?format=overlay&ext=png HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(big.getvalue()) + big.getvalue())
        s.recv(100)  # the answer has begun
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset, not a clean close
        s.close()
    _healthy(serve_url, serve_photo, serve_service)
    assert _gone(serve_url) >= before + 1  # the upload that ended early was counted as a client gone


def _gone(serve_url) -> int:
    import re

    m = re.search(r'^segkit_requests_total\{method="POST",route="/v1/segment",status="499"\} (\d+)$',
                  httpx.get(f"{serve_url}/metrics").text, re.M)
    return int(m.group(1)) if m else 0


def test_a_full_queue_answers_503_with_retry_after(serve_photo):
    from segkit.serve.app import create_app
    from segkit.serve.service import Service

    serve_service = Service(["person_selfie_coco"], workers=1, max_queue=1)
    try:
        with running(create_app(serve_service)) as url:
            # one request in progress: its upload has begun and not ended
            slow = _raw(url)
            slow.sendall(b"POST /v1/segment?format=mask HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % len(serve_photo) + serve_photo[:1000])
            deadline = time.monotonic() + 10
            while serve_service.in_flight < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            r = _post(url, serve_photo)
            _refused(r, 503, "busy")
            assert int(r.headers["retry-after"]) >= 1
            slow.sendall(serve_photo[1000:])  # the first one completes normally
            assert _read_response_status(slow) == 200
            slow.close()
            assert _post(url, serve_photo, "format=mask").status_code == 200  # and the queue is free again
    finally:
        serve_service.close()


def test_an_upload_that_trickles_in_times_out_and_frees_its_place(serve_service, serve_photo):
    from segkit.serve.app import create_app

    with running(create_app(serve_service, body_timeout=1.0)) as url:
        s = _raw(url)
        s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(serve_photo) + serve_photo[:100])
        reply = _read_response(s)
        s.close()
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in reply
        _healthy(url, serve_photo, serve_service)


def test_decoded_pictures_in_flight_stay_within_the_pixel_budget(serve_photo):
    from concurrent.futures import ThreadPoolExecutor

    from segkit.serve.app import create_app
    from segkit.serve.service import Service

    one = 640 * 406  # the photo's pixels
    serve_service = Service(["person_selfie_coco"], workers=2, max_queue=16, pixel_budget=2 * one)
    try:
        with running(create_app(serve_service)) as url, ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: _post(url, serve_photo, "format=cutout").status_code, range(16)))
        assert codes == [200] * 16  # requests over the budget wait their turn, none is refused
        assert one <= serve_service.pixels.peak <= 2 * one and serve_service.pixels.used == 0  # 8 clients, 2 pictures
    finally:
        serve_service.close()


def _read_response_status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        head += sock.recv(4096)
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_lets_requests_in_flight_finish(serve_photo, sig, code):
    proc, url = start_process("--workers", "1")
    try:
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        # two requests in flight: uploads begun, not finished
        socks = []
        for _ in range(2):
            s = _raw(url)
            s.sendall(b"POST /v1/segment?format=mask HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % len(serve_photo) + serve_photo[:5000])
            socks.append(s)
        time.sleep(0.5)
        proc.send_signal(sig)
        time.sleep(0.5)
        assert proc.poll() is None  # still serving them
        for s in socks:
            s.sendall(serve_photo[5000:])
            assert _read_response_status(s) == 200
            s.close()
        assert proc.wait(timeout=60) == code
        err = proc.stderr.read()
        assert "Traceback" not in err and "answered" in err
        with pytest.raises(httpx.ConnectError):  # and it no longer listens
            httpx.get(f"{url}/healthz", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
