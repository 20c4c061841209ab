"""What the server does for one request, without the HTTP: options -> filter and reply, upload
bytes -> frame -> the model's batcher -> the reply's bytes.

The same stages as a folder run, on the same kinds of threads: decoding (and the model's
per-image ``prepare``) on ``workers`` decode threads, the model on its one batching thread,
rendering and encoding on ``workers`` encode threads, so that decoding and encoding overlap the
model. Options go through ``segkit.options``, the checks the command line uses.

Models are zoo names only: a request can never name a file on the server, and a model is loaded
once (at start, or on its first request) and shared by every request after it.
"""
from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from segkit.invocation import command
from segkit import options
from segkit.config import default_threshold
from segkit.errors import InputError, SegkitError, UsageError
from segkit.flow import Filter
from segkit.io.sources import Frame, MAX_PIXELS, decode_image_bytes
from segkit.render import parse_background
from segkit.serve.batching import Batcher, QueueFull
from segkit.serve.replies import FORMATS, Reply, make_reply

#: request parameters: name -> what the API documents. The option names are the CLI's flags
#: ('--max-instances' -> max_instances); nothing here can name a server path.
PARAMS = {
    "model": "zoo name of the model (GET /v1/models); default: the server's first --model",
    "classes": "class names or COCO ids to keep: 'person,dog' or '1,18' (default: all the model has)",
    "threshold": "score / probability threshold, 0..1",
    "max_instances": "keep at most this many instances (highest scores first)",
    "min_area": "drop masks smaller than this fraction of the image, 0..1",
    "background": "cut-out background: transparent | white | blur | blur:25 | a colour (name, #rrggbb, r,g,b)",
    "alpha": "overlay opacity, 0..1",
    "format": "what to return: " + " | ".join(FORMATS) + " (default overlay)",
    "ext": "picture format: jpg | png (default: JPEG for a JPEG upload, else PNG; transparent cut-outs are PNG)",
    "save_conf": "yolo format: end each line with the instance's score (true/false)",
    "image_id": "coco format: the image_id of the results (default: the upload's file name, a number when it is one, as --json)",
}
_OPTION_PARAMS = ("model", "classes", "threshold", "max_instances", "min_area", "background", "alpha")
_MAX_BLUR_SIGMA = 100.0  # a blur background's sigma; larger only costs time


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message in words."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Plan:
    """What one request asked for, checked: the model, its filter and how to reply."""

    model: str
    result_filter: Filter
    fmt: str
    reply_args: dict


_FLAG = re.compile(r"--(model|classes|threshold|max-instances|min-area|background|alpha)\b")


def _api_words(message: str) -> str:
    """The CLI's messages name flags ('--max-instances'); an API client sent 'max_instances'."""
    return _FLAG.sub(lambda m: m.group(1).replace("-", "_"), message)


class Service:
    """The loaded models, the decode and encode threads, and the request pipeline."""

    def __init__(self, models: list[str] | None = None, *, workers: int = 2, max_queue: int = 64,
                 max_pixels: int = MAX_PIXELS, max_wait: float | None = None, progress: bool = False,
                 pixel_budget: int | None = None):
        from segkit import zoo

        self.registry = zoo.load_registry()
        names = list(dict.fromkeys(models or [])) or [self.registry.default]
        for name in names:
            self.registry.get(name)  # unknown names fail here, before anything loads
        self.default_model = names[0]
        self.max_pixels = max_pixels
        self.max_queue = max(1, max_queue)
        self.max_wait = max_wait
        self.in_flight = 0  # requests admitted and not yet answered (bounded by max_queue)
        # decoded pictures held at once, in pixels: --queue bounds how many requests, this bounds
        # their memory (64 uploads of 100 Mpix would be 19 GB of RGB)
        self.pixels = PixelBudget(pixel_budget or PIXEL_BUDGET_IMAGES * max_pixels)
        self._batchers: dict[str, Batcher] = {}
        self._load_lock = threading.Lock()
        self._classes: dict[str, dict[int, str] | None] = {}
        self.decoders = ThreadPoolExecutor(max(1, workers), thread_name_prefix="segkit-decode")
        self.encoders = ThreadPoolExecutor(max(1, workers), thread_name_prefix="segkit-encode")
        self._progress = progress
        self._closed = False
        try:
            for name in names:
                self.load(name, download=True)  # what the operator named may be fetched now
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ models
    def installed(self, name: str) -> bool:
        from segkit import zoo

        return zoo.is_installed(self.registry.get(name))

    def load(self, name: str, download: bool = False) -> Batcher:
        """The model's batcher, loading the model on first use (once, whoever asks first). A
        request never makes the server download: only installed models load on demand."""
        batcher = self._batchers.get(name)
        if batcher is not None:
            return batcher
        with self._load_lock:
            batcher = self._batchers.get(name)
            if batcher is None:
                from segkit.models import load_segmenter

                if self._closed:
                    raise RequestError(503, "the server is stopping")
                segmenter = load_segmenter(name, download=download, progress=self._progress)
                kw = {} if self.max_wait is None else {"max_wait": self.max_wait}
                batcher = self._batchers[name] = Batcher(segmenter, max_queue=self.max_queue, **kw)
        return batcher

    @property
    def loaded(self) -> list[str]:
        return list(self._batchers)

    @property
    def batchers(self) -> dict[str, Batcher]:
        return dict(self._batchers)

    def classes(self, name: str) -> dict[int, str] | None:
        if name not in self._classes:
            self._classes[name] = options.classes_of_model(name, None)[1]
        return self._classes[name]

    def catalogue(self) -> list[dict]:
        """GET /v1/models: every zoo model with its license, whether it is installed here and
        loaded, and its classes."""
        out = []
        for spec in self.registry:
            classes = self.classes(spec.name)
            out.append({"name": spec.name, "family": spec.family, "task": spec.task,
                        "license": spec.license, "description": spec.description,
                        "installed": self.installed(spec.name), "loaded": spec.name in self._batchers,
                        "default": spec.name == self.default_model,
                        # what the CLI would take without --threshold: the page's slider starts there
                        "default_threshold": default_threshold(spec.task != "instance"),
                        "classes": None if classes is None else {str(k): v for k, v in classes.items()}})
        return out

    # ------------------------------------------------------------------ one request
    def plan(self, params: dict[str, str]) -> Plan:
        """Request parameters -> a checked Plan; RequestError(400/404) says what is wrong."""
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise RequestError(400, f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                    f"(known: {', '.join(PARAMS)})")
        fmt = (params.get("format") or "overlay").strip().lower()
        if fmt not in FORMATS:
            raise RequestError(400, f"format {params['format']!r}: one of {', '.join(FORMATS)}")
        model = params.get("model") or self.default_model
        if model not in self.registry:
            try:
                self.registry.get(model)
            except SegkitError as e:
                raise RequestError(404, _api_words(str(e).replace(f"(see `{command('fetch')} --list`)",
                                                                  "(see GET /v1/models)"))) from None
        if model not in self._batchers and not self.installed(model):
            raise RequestError(404, f"model {model} is not installed on this server (GET /v1/models "
                                    f"lists the installed ones; start the server with --model {model} "
                                    "to fetch it)")
        try:
            result_filter = self._filter(model, *(params.get(k) for k in ("classes", "threshold",
                                                                         "max_instances", "min_area")))
            alpha = options.fraction(params["alpha"]) if params.get("alpha") else None
        except UsageError as e:
            raise RequestError(400, _api_words(str(e))) from None
        except ValueError as e:
            raise RequestError(400, f"alpha: {e}") from None
        background = None
        if params.get("background"):
            try:
                background = parse_background(params["background"], files=False)
            except (UsageError, ValueError) as e:
                raise RequestError(400, _api_words(str(e)) if isinstance(e, UsageError)
                                   else f"background {params['background']!r}: {e}") from None
            if not 0 < background.blur_sigma <= _MAX_BLUR_SIGMA:
                raise RequestError(400, f"background {params['background']!r}: blur between 0 and "
                                        f"{_MAX_BLUR_SIGMA:g}")
        ext = (params.get("ext") or "").lower().lstrip(".") or None
        if ext not in (None, "jpg", "jpeg", "png"):
            raise RequestError(400, f"ext {params['ext']!r}: jpg or png")
        conf = (params.get("save_conf") or "false").lower()
        if conf not in ("true", "false", "1", "0", "yes", "no"):
            raise RequestError(400, f"save_conf {params['save_conf']!r}: true or false")
        image_id = params.get("image_id")
        if image_id is not None and image_id.isdigit():
            image_id = int(image_id)
        return Plan(model, result_filter, fmt, dict(background=background, alpha=alpha, ext=ext,
                                                    with_conf=conf in ("true", "1", "yes"), image_id=image_id))

    @lru_cache(maxsize=256)
    def _filter(self, model, classes, threshold, max_instances, min_area) -> Filter:
        """The options' Filter, by the same checks as the command line (cached: requests repeat)."""
        given = dict(model=model, classes=classes, threshold=threshold, max_instances=max_instances,
                     min_area=min_area)
        for name in ("threshold", "max_instances", "min_area"):
            if given[name] is not None:
                try:
                    given[name] = options.CHECKS[name](given[name])
                except ValueError as e:
                    raise UsageError(f"--{name}: {e}") from None
        opts = options.Options.with_defaults(**given)
        return options.build_filter(opts)

    def admit(self) -> None:
        """Count one more request in; 503 (with Retry-After) when the server holds its maximum."""
        if self._closed:
            raise RequestError(503, "the server is stopping", {"Retry-After": "5"})
        if self.in_flight >= self.max_queue:
            raise RequestError(503, f"busy: {self.in_flight} requests in progress (the queue holds "
                                    f"{self.max_queue}); retry shortly", {"Retry-After": "1"})
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    async def segment(self, data: bytes, plan: Plan, name: str = "upload") -> Reply:
        """Upload bytes -> the reply, through the decode threads, the model's batcher and the
        encode threads. Called on the event loop, after admit()."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(plan.model)
        if batcher is None:
            batcher = await loop.run_in_executor(None, self.load, plan.model)
        pixels = await self.pixels.acquire(_pixels_of(data))
        try:
            frame, source_format = await asyncio.wrap_future(
                self.decoders.submit(self._decode, data, name, batcher.segmenter.prepare))
            try:
                seg = await asyncio.wrap_future(batcher.submit(frame, plan.result_filter))
            except QueueFull as e:
                raise RequestError(503, f"busy: {e}; retry shortly", {"Retry-After": "1"}) from None
            reply = make_reply(plan.fmt, source_format=source_format, **plan.reply_args)
            await asyncio.wrap_future(self.encoders.submit(reply.write, frame, seg))
            return reply
        finally:
            self.pixels.release(pixels)

    def _decode(self, data: bytes, name: str, prepare) -> tuple[Frame, str | None]:
        """The CLI's decoder (pixel limit, EXIF orientation, truncation, bombs), then the model's
        per-image work, on a decode thread."""
        try:
            image = decode_image_bytes(data, name, self.max_pixels)
        except InputError as e:
            raise RequestError(_input_status(e.problem), str(e)) from None
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "upload"
        fmt = "JPEG" if data[:3] == b"\xff\xd8\xff" else None
        return Frame(image, stem, prepared=prepare(image)), fmt

    def close(self) -> None:
        """Finish the queued requests, then release the models and threads."""
        self._closed = True
        for batcher in list(self._batchers.values()):
            batcher.close()
            batcher.segmenter.close()
        self.decoders.shutdown(wait=True)
        self.encoders.shutdown(wait=True)


#: the pixel budget, in images of the largest size accepted (--max-pixels)
PIXEL_BUDGET_IMAGES = 4


class PixelBudget:
    """Pixels of decoded pictures in flight, on the event loop: a request waits (in the order it
    came) until its picture fits. One picture never waits for more than the whole budget."""

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self.used = 0
        self.peak = 0
        self._changed: asyncio.Condition | None = None

    async def acquire(self, n: int) -> int:
        n = min(max(0, n), self.capacity)
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + n <= self.capacity)
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    def release(self, n: int) -> None:
        self.used -= n
        if self._changed is not None:
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()


def _pixels_of(data: bytes) -> int:
    """Width x height from the image header alone (no decoding); 0 when it is not an image, which
    the decoder then refuses in words."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.width * im.height
    except Exception:
        return 0


def _input_status(problem: str) -> int:
    """An upload the decoder refused -> its status: too many pixels 413, not an image 415,
    empty 400, broken (truncated, corrupt) 422."""
    if "pixels, over the limit" in problem or "decompression bomb" in problem:
        return 413
    if problem.startswith("not an image"):
        return 415
    if problem.startswith("empty"):
        return 400
    return 422
