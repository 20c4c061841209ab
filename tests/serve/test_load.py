"""A bounded load test on 127.0.0.1: 2,000 requests from 16 concurrent clients to a `segkit serve`
process, with no error, and the server's resident memory flat (<= 50 MB of growth after warm-up).
It stops by itself: a fixed number of requests, each with a timeout."""
from __future__ import annotations

import http.client
import io
import threading
import time
from urllib.parse import urlsplit

import psutil
from PIL import Image

from fixtures.serving import PHOTO, start_process

REQUESTS, CLIENTS, WARMUP = 2000, 16, 200
MAX_GROWTH = 50 * 2**20


def _small_photos() -> list[bytes]:
    """A few small crops of the shipped photo (the model sees 256x256 whatever the size)."""
    im = Image.open(PHOTO)
    out = []
    for i, box in enumerate([(0, 0, 320, 203), (160, 0, 480, 203), (320, 0, 640, 203), (100, 100, 420, 303)]):
        buf = io.BytesIO()
        im.crop(box).resize((160, 100)).save(buf, "JPEG", quality=85 + i)
        out.append(buf.getvalue())
    return out


def _hammer(host: str, port: int, bodies: list[bytes], n: int) -> list[str]:
    """``n`` requests from CLIENTS keep-alive connections; the failures, in words."""
    lock = threading.Lock()
    left = [n]
    failures: list[str] = []

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        i = 0
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            i += 1
            try:
                conn.request("POST", "/v1/segment?format=mask", body=bodies[i % len(bodies)],
                             headers={"Content-Type": "image/jpeg"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or not data.startswith(b"\x89PNG"):
                    with lock:
                        failures.append(f"{resp.status} {data[:120]!r}")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failures.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "clients still running after 300 s"
    return failures


def test_2000_requests_16_at_a_time_no_error_flat_memory():
    proc, url = start_process("--workers", "2", "--model", "selfie_segmentation")  # the smallest bundled model
    try:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        assert host == "127.0.0.1"
        bodies = _small_photos()
        server = psutil.Process(proc.pid)
        t0 = time.perf_counter()
        failures = _hammer(host, port, bodies, WARMUP)
        rss0 = server.memory_info().rss
        failures += _hammer(host, port, bodies, REQUESTS - WARMUP)
        rss1 = server.memory_info().rss
        seconds = time.perf_counter() - t0
        assert failures == [], f"{len(failures)} of {REQUESTS} failed, e.g. {failures[:3]}"
        growth = rss1 - rss0
        print(f"\n{REQUESTS} requests, {CLIENTS} clients: {REQUESTS / seconds:.0f} req/s, "
              f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MB")
        assert growth <= MAX_GROWTH, f"server RSS grew {growth / 2**20:.0f} MB over {REQUESTS - WARMUP} requests"
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        ok = f'segkit_requests_total{{method="POST",route="/v1/segment",status="200"}} {REQUESTS}'
        assert ok in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=60)
