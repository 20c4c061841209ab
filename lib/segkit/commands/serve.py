#!/usr/bin/env python3
"""Serve the models over HTTP: an API (POST /v1/segment, GET /v1/models, /healthz, /metrics,
OpenAPI docs at /docs) and a page at / to drop a photo and download its cut-out."""
from __future__ import annotations

import argparse
import os
import sys

from segkit import cli
from segkit.config import DEFAULTS, parse_args
from segkit.errors import EXIT_INTERRUPTED, UsageError

EPILOG = """examples:
  segkit serve                                         # http://127.0.0.1:8000/ with the default person model
  segkit serve --model person_selfie_coco yolov5s_seg_coco --port 8080
  curl -F file=@images/000000519208.jpg 'http://127.0.0.1:8000/v1/segment?format=cutout&background=white' -o cut.jpg
  curl --data-binary @images/000000183709.jpg 'http://127.0.0.1:8000/v1/segment?format=coco&classes=person'
  (bin/serve.py is the same command, with the same options)

Requests name models by zoo name only (GET /v1/models); a model not loaded at start is loaded on
its first request if it is installed. Ctrl+C / SIGTERM: requests in flight are answered, then the
server exits (130 / 143).

exit codes: 1 a model cannot load or the port cannot be bound, 2 bad arguments, 130 / 143 stopped"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("serve.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one, printed)")
    p.add_argument("--model", dest="models", action="extend", nargs="+", metavar="NAME",
                   help="zoo models to load at start (fetched if needed); the first is the default of "
                        "requests that name none. Default: the default person model")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads decoding and threads encoding beside the model (default 2)")
    p.add_argument("--token", default=os.environ.get("SEGKIT_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' on the API and /metrics "
                        "(default: $SEGKIT_TOKEN; the page asks for it)")
    p.add_argument("--queue", type=int, default=64, metavar="N",
                   help="requests handled at once; more get 503 with Retry-After (default 64)")
    p.add_argument("--max-body-mb", type=float, default=50, metavar="MB",
                   help="largest upload accepted (default 50); larger: 413")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help=f"largest image accepted, in pixels (default {DEFAULTS['max_pixels']:,}; "
                        "decompression-bomb guard, as the other commands)")
    p.add_argument("--access-log", action="store_true", help="print one line per request")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from segkit import options

    args = parse_args(build_parser(), argv)
    for flag, value in (("--workers", args.workers), ("--queue", args.queue), ("--max-pixels", args.max_pixels)):
        if value is not None:
            try:
                options.count(value)
            except ValueError as e:
                raise UsageError(f"{flag}: {e}") from None
    if not args.max_body_mb > 0:
        raise UsageError(f"--max-body-mb {args.max_body_mb}: must be more than 0")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: 0..65535")
    if args.token is not None and not args.token.strip():
        raise UsageError("--token: empty")

    from segkit.flow import EXIT_TERMINATED, Terminated, sigterm_raises
    from segkit.serve.server import is_loopback, listen, serve_forever, url

    try:
        sock = listen(args.host, args.port)
    except OSError as e:
        from segkit.errors import SegkitError
        from segkit.io.sources import os_problem

        raise SegkitError(f"{args.host}:{args.port}: cannot listen ({os_problem(e)})") from None
    service = None
    try:
        from segkit.serve.app import create_app
        from segkit.serve.service import Service

        models = args.models or ([DEFAULTS["model"]] if DEFAULTS.get("model") else None)
        service = Service(models, workers=args.workers, max_queue=args.queue,
                          max_pixels=args.max_pixels or DEFAULTS["max_pixels"], progress=True)
        app = create_app(service, token=args.token, max_body=int(args.max_body_mb * 1024 * 1024))
        if not is_loopback(args.host):
            print(f"segkit serve: warning: listening on {args.host}: anyone who can reach this machine "
                  f"can use the server{'' if args.token else ' (give --token to require one)'}",
                  file=sys.stderr, flush=True)
        print(f"segkit serve: {url(sock)}  (models: {', '.join(service.loaded)}; API docs at /docs; "
              "Ctrl+C to stop)", flush=True)
        with sigterm_raises():
            serve_forever(app, sock, access_log=args.access_log)
        return 0
    except KeyboardInterrupt:
        print("segkit serve: stopped (in-flight requests were answered)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Terminated:
        print("segkit serve: terminated (in-flight requests were answered)", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    finally:
        sock.close()
        if service is not None:
            service.close()
