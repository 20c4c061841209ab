"""``segment_folder.py --runner beam``: the same folder run on Apache Beam, for when one machine is
not enough. Same names, same per-image outputs, same results cache, failures.jsonl and results.json
as the local runner (bin/segment_folder.py), built from the same lib pieces.

Pipeline::

    MatchFiles(each input) ─► keep images, name them as the local runner does (unique names)
        ─► plan: skip complete outputs ─► read + decode (Beam FileSystems, Pillow)
        ─► RunInference(SegmenterModelHandler: flow.segment) ─► the sinks (flow.write)
        ─► failures.jsonl   ─► results.json (merged once every write is done)

Inputs go through Beam's FileSystems, so ``gs://`` / ``s3://`` globs work where Beam's GCP/AWS
extras are installed. Outputs are written with the local runner's atomic sinks, so ``-o`` must be
a folder every worker can reach (local disk for the DirectRunner; a shared mount on a cluster).
The model handler carries the model's name/path, never the loaded model: each worker process
loads it once (a remote ``--model-path`` is copied to the worker first).
"""
from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from segkit import flow
from segkit.config import DEFAULTS
from segkit.errors import InputError, SegkitError, UsageError, error
from segkit.io.results import CocoResults, ResultsCache, load_image_ids, read_failures, write_failures
from segkit.io.resume import Made, check_output_dir, complete, output_folder, settings_changed, unique_names
from segkit.io.sources import IMAGE_EXTS, MAX_PIXELS, Frame, decode_image_bytes, is_glob

METRICS_NAMESPACE = "segkit"
DEFAULT_BATCH = 8  # images per RunInference batch: decoded photos are ~1 MB each


@contextlib.contextmanager
def _quiet_import():
    """Beam logs 'Failed to import GCSFileSystem' / 'apitools not found' at import when its GCP
    extras are absent, and its module-level logging.warning() would install a root handler in
    the user's process. Neither matters to a local run: a gs:// input still fails clearly."""
    root = logging.getLogger()
    guard, level = logging.NullHandler(), root.level
    root.addHandler(guard)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(guard)
        root.setLevel(level)


with _quiet_import():
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics.metric import Metrics, MetricsFilter
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


class _DropMemoryNotice(logging.Filter):
    """Beam 2.77 ties its `resource` import to an optional torch import, and without torch it
    warns 'Resource module is not available' at every model load (Linux has the module): noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Resource module is not available" not in str(record.msg)


@contextlib.contextmanager
def _quiet_run():
    """While a pipeline runs in this process: no memory notice, and no logged worker traceback
    (the DirectRunner re-raises the worker's error, which the caller reports on one line)."""
    root, worker_log = logging.getLogger(), logging.getLogger("apache_beam.runners.common")
    notice, level = _DropMemoryNotice(), worker_log.level
    root.addFilter(notice)
    worker_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.removeFilter(notice)
        worker_log.setLevel(level)


# --------------------------------------------------------------------------- decoding
# --------------------------------------------------------------------------- inputs and names
def _is_remote(uri: str) -> bool:
    return FileSystems.get_scheme(uri) not in (None, "file")


def _static_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard ('shots/a/**/*.jpg' -> 'shots/a/')."""
    m = re.search(r"[*?\[]", pattern)
    head = pattern if m is None else pattern[:m.start()]
    return head[:head.rfind("/") + 1]


def _glob_variants(pattern: str) -> list[str]:
    """Python's recursive glob lets '**/' match no folder at all; Beam's needs at least one.
    Match both ways (duplicates are removed later)."""
    variants = [pattern]
    while any("**/" in v for v in variants):
        nxt = []
        for v in variants:
            if "**/" in v:
                i = v.index("**/")
                nxt += [v[:i] + "\x00/" + v[i + 3:], v[:i] + v[i + 3:]]
            else:
                nxt.append(v)
        variants = nxt
    return sorted({v.replace("\x00", "**") for v in variants})


class InputSpec:
    """One ``-i`` argument as Beam match patterns, with the local runner's naming rule."""

    def __init__(self, index: int, spec: str, recursive: bool):
        self.index, self.spec = index, spec
        self.is_glob = is_glob(spec)
        if self.is_glob:
            self.root = _static_prefix(spec)
            self.patterns = _glob_variants(spec)
        else:  # a folder (local folders are checked by the caller; remote ones cannot be cheaply)
            self.root = spec.rstrip("/") + "/"
            self.patterns = [FileSystems.join(spec.rstrip("/"), "**" if recursive else "*")]

    def visible(self, uri: str) -> bool:
        """What Python's glob / the folder walk would list: no hidden names."""
        rel = uri[len(self.root):] if uri.startswith(self.root) else uri
        parts = rel.split("/")
        return not any(p.startswith(".") for p in (parts if self.is_glob else parts[-1:]))

    def name(self, uri: str, root: tuple[tuple[str, ...], int] | None) -> str:
        """Output stem, as sources.expand_inputs names it: relative to the folder, or to the
        common folder of everything the glob matched (the file stem when it matched one file)."""
        if not self.is_glob:
            rel = uri[len(self.root):]
        elif root is not None and root[1] > 1:
            common = "/".join(root[0])
            rel = uri[len(common) + 1:] if common else uri
        else:
            rel = uri.rsplit("/", 1)[-1]
        return str(PurePosixPath(rel).with_suffix(""))


class _CommonFolder(beam.CombineFn):
    """(common leading path components, count) of the files one glob matched."""

    def create_accumulator(self):
        return None, 0

    def add_input(self, acc, uri):
        return self.merge_accumulators([acc, (tuple(uri.split("/")[:-1]), 1)])

    def merge_accumulators(self, accs):
        common, count = None, 0
        for parts, n in accs:
            if n == 0:
                continue
            count += n
            if common is None:
                common = parts
            else:
                k = 0
                while k < min(len(common), len(parts)) and common[k] == parts[k]:
                    k += 1
                common = common[:k]
        return common, count

    def extract_output(self, acc):
        return acc


def _naming_path(uri: str) -> Path:
    """A Path for batch.unique_names (which hashes ``resolve()``): the file itself when local,
    a stable absolute stand-in for a remote URI (Path would fold 'gs://' into 'gs:/')."""
    if _is_remote(uri):
        scheme, rest = uri.split("://", 1)
        return Path("/", scheme, rest)
    return Path(uri)


def _frame_path(uri: str):
    return uri if _is_remote(uri) else Path(uri)


def _keep(item, specs: dict, patterns: list[str] | None, out_dir: str):
    index, uri = item
    name = uri.rsplit("/", 1)[-1]
    if PurePosixPath(name).suffix.lower() not in IMAGE_EXTS:
        return False
    if patterns and not any(fnmatch.fnmatch(name, g) for g in patterns):
        return False
    # Inputs inside the output folder (a recursive run over a tree holding its outputs) are skipped.
    return _is_remote(uri) or Path(out_dir) not in Path(uri).resolve().parents


def _name(item, specs: dict, roots: dict):
    index, uri = item
    key = uri if _is_remote(uri) else os.path.realpath(uri)  # one file reached twice: done once
    return key, (index, uri, specs[index].name(uri, roots.get(index)))


def _disambiguate(group) -> Iterable[tuple[int, str, str]]:
    """Same-name files (x.jpg beside x.png) get the local runner's distinct names."""
    _, entries = group
    entries = sorted(entries)
    named = unique_names([(_naming_path(uri), name) for _, uri, name in entries])
    for (index, uri, _), (_, name) in zip(entries, named):
        yield index, uri, name


# --------------------------------------------------------------------------- stages
class _Plan(beam.DoFn):
    """Skip images whose outputs (and cached results) are complete, unless overwrite."""

    def __init__(self, sinks: list, overwrite: bool):
        self.sinks, self.overwrite = sinks, overwrite
        self.skipped = Metrics.counter(METRICS_NAMESPACE, "skipped")

    def process(self, item):
        _, uri, name = item
        if not self.overwrite and complete(self.sinks, Frame(None, name, _frame_path(uri))):
            self.skipped.inc()
            yield beam.pvalue.TaggedOutput("skipped", name)
        else:
            yield item


class _Decode(beam.DoFn):
    """Read through Beam's FileSystems (local, gs://, s3://) and decode with Pillow."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self.failed = Metrics.counter(METRICS_NAMESPACE, "failed")

    def process(self, item):
        index, uri, name = item
        try:
            with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
            yield Frame(decode_image_bytes(data, uri, self.max_pixels), name, _frame_path(uri), index)
        except InputError as e:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput("failed", (uri, e.problem))
        except OSError as e:  # vanished or unreadable since it was matched
            self.failed.inc()
            yield beam.pvalue.TaggedOutput("failed", (uri, f"cannot read ({e.strerror or e})"))


class _Write(beam.DoFn):
    """The run loop's write step over the local runner's sinks (the results cache last: its
    file means the image is complete)."""

    def __init__(self, sinks: list):
        self.sinks = sinks
        self.done = Metrics.counter(METRICS_NAMESPACE, "done")
        self.failed = Metrics.counter(METRICS_NAMESPACE, "failed")

    def process(self, result: PredictionResult):
        frame = result.example
        try:
            flow.write(self.sinks, frame, result.inference)
        except Exception as e:  # a write failed (disk full, permission): record, go on
            self.failed.inc()
            yield beam.pvalue.TaggedOutput("failed", (str(frame.path), str(e)))
            return
        self.done.inc()
        yield frame.name


class _LockedSegmenter:
    """RunInference shares one loaded model between the threads of a worker process; TFLite
    interpreters are not thread-safe, so calls take turns."""

    def __init__(self, segmenter):
        self.segmenter, self.lock = segmenter, threading.Lock()


class SegmenterModelHandler(ModelHandler):
    """RunInference adapter over :func:`segkit.models.load_segmenter`: Frames in,
    PredictionResult(frame, Segmentation) out. Picklable: holds names and paths only."""

    def __init__(self, model: str | None, model_path: str | None, download: bool = True,
                 result_filter: flow.Filter | None = None, max_batch_size: int = DEFAULT_BATCH,
                 yolo_options: dict | None = None):
        super().__init__(max_batch_size=max_batch_size)
        self.model, self.model_path, self.download = model, model_path, download
        self.yolo_options = dict(yolo_options or {})  # imgsz, iou
        self.result_filter = result_filter or flow.Filter()

    def load_model(self) -> _LockedSegmenter:
        from segkit.models import load_segmenter

        path = self.model_path
        if path and _is_remote(path):
            path = str(localize(path, Path(tempfile.mkdtemp(prefix="segkit-model-"))))
        return _LockedSegmenter(load_segmenter(self.model, path, download=self.download, progress=False,
                                               **getattr(self, "yolo_options", {})))

    def run_inference(self, batch: Sequence[Frame], model: _LockedSegmenter, inference_args=None):
        seg, step = model.segmenter, max(1, model.segmenter.max_batch)
        out = []
        with model.lock:
            for i in range(0, len(batch), step):
                out += flow.segment(seg, batch[i:i + step], self.result_filter)  # the run loop's model step
        return [PredictionResult(f, s, seg.name) for f, s in zip(batch, out)]

    def get_num_bytes(self, batch: Sequence[Frame]) -> int:
        return sum(f.image.nbytes for f in batch)  # the default pickles the whole batch to count

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def localize(uri: str, dest: Path) -> Path:
    """Copy a model file or folder from any Beam FileSystem into ``dest``; returns the copy."""
    src = uri.rstrip("/")
    target = dest / src.rsplit("/", 1)[-1]
    inside = FileSystems.match([src + "/**"])[0].metadata_list  # a folder (SavedModel) ...
    if inside:
        pairs = [(m.path, target / m.path[len(src) + 1:]) for m in inside]
    else:  # ... or one file (.tflite, .keras, frozen .pb)
        single = FileSystems.match([src])[0].metadata_list
        if not single:
            raise SegkitError(f"{uri}: no such model file or folder")
        pairs = [(single[0].path, target)]
    for remote, local in pairs:
        local.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(remote, compression_type=CompressionTypes.UNCOMPRESSED) as r, \
                open(local, "wb") as w:
            shutil.copyfileobj(r, w)
    return target


# --------------------------------------------------------------------------- final steps
def _write_failures(failed: list, out_dir: Path) -> None:
    write_failures(out_dir, sorted(failed))


class _Merge(beam.DoFn):
    """results.json from the per-image cache, once: runs after every write (its side inputs)."""

    def __init__(self, out_dir: Path, json_path: Path, id_map):
        self.out_dir, self.json_path, self.id_map = out_dir, json_path, id_map
        self.detections = Metrics.counter(METRICS_NAMESPACE, "detections")

    def process(self, items, n_done: int, n_skipped: int):
        if n_done + n_skipped == 0:
            return
        ordered = [(_naming_path(uri), name) for _, uri, name in sorted(items)]
        self.detections.inc(ResultsCache(self.out_dir).merge(ordered, self.json_path, self.id_map))


def build_pipeline(p: beam.Pipeline, specs: list[InputSpec], *, sinks: list,
                   out_dir: Path, json_path: Path | None, id_map, handler,
                   patterns: list[str] | None = None, overwrite: bool = False,
                   max_pixels: int = MAX_PIXELS, made: Made | None = None) -> None:
    by_index = {s.index: s for s in specs}
    matched = [
        p | f"Match {s.index}.{j}" >> fileio.MatchFiles(pat, fileio.EmptyMatchTreatment.ALLOW)
        | f"Tag {s.index}.{j}" >> beam.Map(lambda m, i: (i, m.path), s.index)
        for s in specs for j, pat in enumerate(s.patterns)
    ]
    visible = (matched | "All matches" >> beam.Flatten()
               | "Not hidden" >> beam.Filter(lambda it, sp: sp[it[0]].visible(it[1]), by_index))
    roots = (visible | "Glob matches" >> beam.Filter(lambda it, sp: sp[it[0]].is_glob, by_index)
             | "Common folder" >> beam.CombinePerKey(_CommonFolder()))
    items = (visible
             | "Images" >> beam.Filter(_keep, by_index, patterns, str(out_dir.resolve()))
             | "Name" >> beam.Map(_name, by_index, beam.pvalue.AsDict(roots))
             | "Once per file" >> beam.CombinePerKey(min)
             | "By name" >> beam.Map(lambda kv: (kv[1][2].lower(), kv[1]))
             | "Same names" >> beam.GroupByKey()
             | "Unique names" >> beam.FlatMap(_disambiguate))

    if json_path:  # the per-image results cache, written last
        sinks = sinks + [CocoResults(json_path, ResultsCache(out_dir), id_map=id_map)]
    if made is not None:  # the settings record, last; forgotten first when an input is redone
        sinks = [made.first(), *sinks, made]
    plan = items | "Plan" >> beam.ParDo(_Plan(sinks, overwrite)).with_outputs("skipped", main="todo")
    decoded = plan.todo | "Decode" >> beam.ParDo(_Decode(max_pixels)).with_outputs("failed", main="frames")
    written = (decoded.frames | "Segment" >> RunInference(handler)
               | "Write" >> beam.ParDo(_Write(sinks)).with_outputs("failed", main="done"))
    ((decoded.failed, written.failed) | "Failures" >> beam.Flatten()
     | "All failures" >> beam.combiners.ToList()
     | "failures.jsonl" >> beam.Map(_write_failures, out_dir))
    if json_path:
        n_done = written.done | "Count done" >> beam.combiners.Count.Globally()
        n_skipped = plan.skipped | "Count skipped" >> beam.combiners.Count.Globally()
        (items | "All items" >> beam.combiners.ToList()
         | "results.json" >> beam.ParDo(_Merge(out_dir, json_path, id_map),
                                        beam.pvalue.AsSingleton(n_done), beam.pvalue.AsSingleton(n_skipped)))


# --------------------------------------------------------------------------- the command
def _model_name(args) -> str:
    """The name load_segmenter will give the model, without loading it (checks it exists)."""
    from segkit import zoo
    from segkit.models import detect_family

    if args.model_path:
        if _is_remote(args.model_path):
            return args.model_path.rstrip("/").rsplit("/", 1)[-1]
        _, path = detect_family(Path(args.model_path))
        spec = zoo.entry_beside(path)
        return spec.name if spec else Path(args.model_path).name
    registry = zoo.load_registry()
    return registry.get(args.model or registry.default).name


def _pipeline_error(e: Exception) -> SegkitError:
    """Beam wraps a worker's exception in pages of context: keep the worker's own last line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    own = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b.*: ", ln)]
    text = (own or lines or [type(e).__name__])[-1]
    return SegkitError(f"beam pipeline failed: {text[:500]}")


def _pipeline(options: PipelineOptions) -> "beam.Pipeline":
    """A Pipeline, or one line naming what the runner refused in --beam-options (Dataflow checks
    its project, region and gs:// locations here, with a multi-line ValueError)."""
    options_log = logging.getLogger("apache_beam.options.pipeline_options")
    level = options_log.level
    options_log.setLevel(logging.ERROR)  # the same problems, logged once more as warnings
    try:
        return beam.Pipeline(options=options)
    except ValueError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].lower().startswith("pipeline has validation"):
            lines = lines[1:]
        raise UsageError(f"--beam-options: {'; '.join(lines)}") from None
    finally:
        options_log.setLevel(level)


def run_folder(args) -> tuple[flow.RunStats, str]:
    """segment_folder.py --runner beam: the local runner's checks, then one pipeline. Returns the
    run's stats and "<model>; beam <runner>" for the summary line."""
    from segkit import options
    from segkit.folder_run import check_inputs, no_images, settings

    check_inputs(args.input, remote=_is_remote)
    out_dir = Path(args.output or DEFAULTS["output"])
    if _is_remote(str(out_dir)) or "://" in (args.output or ""):
        raise UsageError(f"{args.output}: the beam runner writes into a folder its workers can reach "
                         "(local disk or a shared mount), not a bucket URL")
    check_output_dir(out_dir, [s for s in args.input if not _is_remote(s)], [])
    specs = [InputSpec(i, s, args.recursive) for i, s in enumerate(args.input)]

    sinks, json_path = options.build_outputs(args, out_dir)
    id_map = load_image_ids(args.coco_annotations) if args.coco_annotations else None
    result_filter = options.build_filter(args)
    handler = SegmenterModelHandler(args.model, args.model_path, download=not args.no_download,
                                    result_filter=result_filter,
                                    yolo_options={k: getattr(args, k, None) for k in ("imgsz", "iou")})
    model_name = _model_name(args)
    identity = args.model_path if args.model_path and _is_remote(args.model_path) else options.model_identity(args)
    now = settings(args, identity, result_filter.classes)
    options = PipelineOptions(shlex.split(args.beam_options or ""))
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = "DirectRunner"

    p = _pipeline(options)  # checks the runner's options before any output folder is made

    with output_folder(out_dir):
        changed = settings_changed(out_dir, now)
        t0 = time.perf_counter()
        build_pipeline(p, specs, sinks=sinks, out_dir=out_dir, json_path=json_path, id_map=id_map,
                       handler=handler, patterns=args.pattern, overwrite=args.overwrite,
                       max_pixels=args.max_pixels or MAX_PIXELS, made=Made(out_dir, now))
        try:
            with _quiet_run():
                result = p.run()
                result.wait_until_finish()
        except (KeyboardInterrupt, SegkitError):
            raise
        except Exception as e:
            raise _pipeline_error(e) from None
        counts = _counters(result)
    stats = flow.RunStats(done=counts.get("done", 0), skipped=counts.get("skipped", 0),
                          failed=counts.get("failed", 0), seconds=time.perf_counter() - t0)

    if stats.done + stats.skipped + stats.failed == 0:
        raise no_images(args)
    if changed and stats.done and not args.overwrite:
        print(f"segkit: note: the last run into {out_dir} used other settings ({'; '.join(changed)}): "
              "its outputs were redone, their files replaced", file=sys.stderr)
    if stats.failed:
        for f in read_failures(out_dir):
            error(f"{f['file']}: {f['reason']}")
        print(f"failures: {out_dir / 'failures.jsonl'}", file=sys.stderr)
    if json_path and stats.done + stats.skipped and not args.quiet:
        print(f"COCO results: {json_path} ({counts.get('detections', 0)} detections)")
    return stats, f"{model_name}; beam {options.view_as(StandardOptions).runner}"


def _counters(result) -> dict[str, int]:
    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    counts: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        counts[c.key.metric.name] = counts.get(c.key.metric.name, 0) + int(value or 0)
    return counts
