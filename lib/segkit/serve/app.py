"""The HTTP face of a :class:`~segkit.serve.service.Service`: a FastAPI app.

    POST /v1/segment   an image (multipart file or the raw body) + options -> picture / JSON / text
    GET  /v1/models    the zoo: licenses, installed, loaded, classes
    GET  /healthz      liveness
    GET  /metrics      Prometheus text
    GET  /             the upload page (static files, no build step); /docs: the OpenAPI docs

Every refusal is a 4xx JSON ``{"error": "..."}`` in words; only a fault of the server itself is a
500, and it never carries a traceback to the client. A guard in front of the app counts every
answer, checks the token, and caps the body size while it is read (a too large Content-Length is
refused before a byte of the body is read).
"""
from __future__ import annotations

import hmac
import re
import sys
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from segkit.serve.metrics import Metrics
from segkit.serve.replies import FORMATS
from segkit.serve.service import PARAMS, RequestError, Service

STATIC = Path(__file__).resolve().parent / "static"
#: the largest request body accepted (an upload); a 50 MB photo is far past any camera's JPEG
MAX_BODY = 50 * 1024 * 1024
#: how long an upload may take to arrive: a client trickling its body would otherwise hold one of
#: the --queue places for ever
BODY_TIMEOUT_S = 120.0
#: paths anyone may read when a token is set: the page and its files, the docs, liveness
_OPEN = re.compile(r"^/(|static/.*|healthz|docs|docs/.*|openapi\.json)$")
_ROUTES = ("/", "/v1/segment", "/v1/models", "/healthz", "/metrics", "/docs", "/openapi.json")
STATUS_CLIENT_GONE = 499  # what the metrics call a request whose client left (nginx's code)


class BodyTooLarge(Exception):
    pass


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Guard:
    """Pure ASGI in front of the app: metrics for every answer, the bearer token, the body cap."""

    def __init__(self, app, metrics: Metrics, token: str | None, max_body: int):
        self.app, self.metrics, self.token, self.max_body = app, metrics, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        status = [0]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if self.token and not _OPEN.match(path):
                given = headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                    await error(401, "this server needs a token: send 'Authorization: Bearer TOKEN'",
                                {"WWW-Authenticate": "Bearer"})(scope, receive, send_status)
                    return
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                # refused before reading a byte of it: the connection closes after the answer
                await error(413, f"upload of {length} bytes is over the limit of {self.max_body:,} "
                                 "bytes", {"Connection": "close"})(scope, receive, send_status)
                return
            received = 0

            async def capped_receive():
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge()
                return message

            await self.app(scope, capped_receive, send_status)
        finally:
            route = path if path in _ROUTES else "/static" if path.startswith("/static/") else "other"
            self.metrics.observe(scope["method"], route, status[0] or STATUS_CLIENT_GONE,
                                 time.perf_counter() - t0)


def _segment_openapi() -> dict:
    return {
        "parameters": [{"name": k, "in": "query", "required": False, "description": v,
                        "schema": {"type": "string"}} for k, v in PARAMS.items()],
        "requestBody": {"required": True, "description": "the photo: a multipart form with one file field "
                        "(its other fields may carry the parameters), or the raw image bytes as the body",
                        "content": {"multipart/form-data": {"schema": {
                            "type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"]}},
                            "image/*": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "overlay / cutout / mask: an image; coco: JSON; yolo: text",
                              "content": {"image/png": {}, "image/jpeg": {}, "application/json": {},
                                          "text/plain": {}}},
                      "4XX": {"description": "{\"error\": \"...\"}: what is wrong with the request"},
                      "503": {"description": "busy: retry after the Retry-After seconds"}},
    }


async def _within(reading, seconds: float):
    import asyncio

    try:
        return await asyncio.wait_for(reading, seconds)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the upload did not arrive within {seconds:g} s", {"Connection": "close"}) from None


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).stem)[:80]
    return stem or "upload"


def create_app(service: Service, *, token: str | None = None, max_body: int = MAX_BODY,
               body_timeout: float = BODY_TIMEOUT_S):
    """The ASGI app for ``service`` (wrapped in the guard): what uvicorn runs."""
    from segkit import __version__

    metrics = Metrics()
    app = FastAPI(title="segkit", version=__version__, docs_url="/docs", redoc_url=None,
                  description="Cut people and objects out of photos: the segkit command line's models, "
                              "options and outputs over HTTP.")
    app.state.service, app.state.metrics = service, metrics

    # ------------------------------------------------------------------ errors, in words
    @app.exception_handler(RequestError)
    async def _refused(request, e: RequestError):
        return error(e.status, e.message, e.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, e):
        return error(413, f"upload over the limit of {max_body:,} bytes", {"Connection": "close"})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request, e):
        return Response(status_code=STATUS_CLIENT_GONE)  # nobody reads it; the metrics count it

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        return error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        return error(400, "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()))

    @app.exception_handler(Exception)
    async def _fault(request, e: Exception):
        print(f"segkit serve: error: {request.url.path}: {type(e).__name__}: {e}", file=sys.stderr)
        return error(500, f"internal error ({type(e).__name__}: {e})")

    # ------------------------------------------------------------------ the API
    @app.post("/v1/segment", summary="Segment one photo", openapi_extra=_segment_openapi(),
              response_class=Response)
    async def segment(request: Request):
        service.admit()
        try:
            params = dict(request.query_params)
            name = "upload"
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await _within(request.form(max_files=1, max_fields=len(PARAMS) + 4), body_timeout)
                try:
                    upload = None
                    for key, value in form.multi_items():
                        if isinstance(value, UploadFile):
                            upload = value
                        else:
                            params.setdefault(key, value)
                    if upload is None:
                        raise RequestError(400, "no file in the form: send the photo as a file field "
                                                "(-F file=@photo.jpg) or as the raw body")
                    plan = service.plan(params)
                    name = upload.filename or name
                    data = await upload.read()
                finally:
                    await form.close()
            else:
                plan = service.plan(params)  # bad options are refused before the body is read
                data = await _within(request.body(), body_timeout)
            reply = await service.segment(data, plan, name)
        finally:
            service.release()
        filename = f"{_safe_name(name)}_{plan.fmt}{reply.ext}"
        return Response(reply.body, media_type=reply.media_type,
                        headers={"Content-Disposition": f'inline; filename="{filename}"'})

    @app.get("/v1/models", summary="The model zoo: licenses, installed and loaded models, classes")
    async def models():
        import asyncio

        listing = await asyncio.get_running_loop().run_in_executor(None, service.catalogue)
        return {"default": service.default_model, "formats": list(FORMATS), "models": listing}

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok", "models": service.loaded, "in_flight": service.in_flight}

    @app.get("/metrics", summary="Requests, errors and latency (Prometheus text)",
             response_class=PlainTextResponse)
    async def metrics_text():
        batchers = [(f'model="{m}"', b) for m, b in service.batchers.items()]
        gauges = {"segkit_requests_in_flight": ("Requests being handled now.", [("", service.in_flight)]),
                  "segkit_model_queue": ("Requests waiting for the model.", [(k, b.waiting) for k, b in batchers]),
                  "segkit_model_batches": ("Passes of the model so far.", [(k, b.batches) for k, b in batchers]),
                  "segkit_model_images": ("Images through the model so far.", [(k, b.images) for k, b in batchers]),
                  "segkit_model_seconds": ("Seconds in the model so far.", [(k, b.model_s) for k, b in batchers])}
        return PlainTextResponse(metrics.text(gauges), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return Guard(app, metrics, token, max_body)
