"""A real server for the serve tests: the app on uvicorn, on a free port of 127.0.0.1, in a thread
of the test process (one model load for the whole session); tests that need a process of
its own (signals, memory) start `python -m segkit serve` instead (``start_process``)."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "images" / "000000519208.jpg"  # 640x406 COCO photo shipped with the project


@contextlib.contextmanager
def running(app):
    """Serve ``app`` on 127.0.0.1:<free port> in a thread; yields the base URL."""
    from segkit.serve.server import listen, make_server, url

    sock = listen("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield url(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def service():
    from segkit.serve.service import Service

    s = Service(["person_selfie_coco"], workers=2, max_queue=64)
    yield s
    s.close()


@pytest.fixture(scope="session")
def base_url(service):
    from segkit.serve.app import create_app

    with running(create_app(service)) as u:
        yield u


@pytest.fixture(scope="session")
def photo() -> bytes:
    return PHOTO.read_bytes()


def start_process(*args: str) -> tuple[subprocess.Popen, str]:
    """`python -m segkit serve --port 0 ARGS` from this checkout; (process, base URL) once it listens."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    proc = subprocess.Popen([sys.executable, "-m", "segkit", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not m:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"segkit serve did not start: {line}{out}{err}")
    return proc, m.group(1)
