"""Running the app: a listening socket, uvicorn, and a stop that lets in-flight requests finish.

    sock = listen("127.0.0.1", 8000)
    serve_forever(app, sock)          # returns after Ctrl+C / SIGTERM, once in-flight requests are answered

On Ctrl+C or SIGTERM uvicorn stops accepting, waits for the requests in flight (their model
batches and encodes included), closes the connections, and returns; the signal is then raised
again, so the caller ends with the usual code (130 / 143). A second Ctrl+C stops at once.
"""
from __future__ import annotations

import ipaddress
import socket

#: how long a stop waits for in-flight requests before closing their connections
GRACEFUL_S = 30
#: connections + requests uvicorn itself accepts at once (a plain 503 past it): far above the
#: service's own queue, whose 503 carries Retry-After; this one only bounds a flood of idle sockets
MAX_CONNECTIONS = 1024


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (``port`` 0: any free one; read it from getsockname())."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def make_server(app, *, access_log: bool = False):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=access_log, lifespan="off",
                            loop="asyncio", timeout_keep_alive=5, timeout_graceful_shutdown=GRACEFUL_S,
                            limit_concurrency=MAX_CONNECTIONS, server_header=False)
    return uvicorn.Server(config)


def serve_forever(app, sock: socket.socket, *, access_log: bool = False) -> None:
    """Serve on ``sock`` until Ctrl+C / SIGTERM (on the main thread) or ``should_exit``.

    With the GIL switch interval of a folder run (flow.responsive_gil): the event loop, the
    decode and encode threads hand the GIL back to the model thread quickly."""
    from segkit.flow import responsive_gil

    with responsive_gil():
        make_server(app, access_log=access_log).run(sockets=[sock])
