"""``evaluate(Options) -> Report``: all of ``segkit evaluate`` but its flags. A results file or a
model, against a COCO annotation file or an images/ + masks/ folder; instance models (and
results files) get COCO box and mask AP, semantic ones IoU / precision / recall per class, with
the three person figures on COCO."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from segkit.config import DEFAULTS, default_threshold
from segkit.errors import UsageError
from segkit.evaluation.ap import COCO_MAX_DETS, coco_ap
from segkit.evaluation.coco import images_with_classes, load_coco, load_results
from segkit.evaluation.pixels import PersonFigures, semantic_coco_results
from segkit.evaluation.predict import predict_coco, semantic_coco, semantic_folder
from segkit.evaluation.scope import covered_by_results, model_classes, present_in_folder, scoring_of_results
from segkit.flow import Filter


@dataclass
class Options:
    """What to score against what. The fields are ``segkit evaluate``'s flags (its --help says
    what each does); a bad combination of them is a ``UsageError`` here."""

    annotations: str | None = None   # COCO instances file (ground truth) ...
    images: str | None = None        # ... with its image folder, or images/ beside ``masks``
    masks: str | None = None
    results: str | None = None       # a COCO results file, or else a model:
    model: str | None = None
    model_path: str | None = None
    download: bool = True
    imgsz: int | None = None         # YOLO models: input size / NMS IoU (None: the model's own)
    iou: float | None = None
    classes: set[int] | None = None
    threshold: float | None = None   # None: the packaged default of the model's kind
    min_area: float | None = field(default_factory=lambda: DEFAULTS["min_area"])
    semantic: bool = False           # force IoU (or AP) scoring of a results file / model
    instance: bool = False
    only_with_class: bool = False
    per_class: bool = False
    limit: int | None = None
    progress: bool = True            # a progress bar on stderr

    def __post_init__(self):
        if self.threshold is None:  # a --config file may set it to null too
            self.threshold = DEFAULTS["threshold"]  # still None: _kind_threshold once the model is known
        if self.masks and self.annotations:
            raise UsageError("give --annotations (COCO) or --masks (mask folder), not both")
        if not self.masks and not self.annotations:
            raise UsageError("say what to score against: --annotations FILE or --images DIR --masks DIR")
        if self.results and self.masks:
            raise UsageError("--results needs --annotations (COCO ids)")
        if not self.results and not self.images:
            raise UsageError("--images DIR is needed to run a model")
        if self.semantic and self.instance:
            raise UsageError("--semantic or --instance, not both")


@dataclass
class Report:
    metrics: dict   # what `-o` writes: the scores, source, threshold, failed images, images scored
    seconds: float

    @property
    def failed(self) -> list[str]:
        return self.metrics["failed_images"]


def evaluate(options: Options, on_error: Callable[[str], None] | None = None) -> Report:
    """Score what ``options`` name. An image that fails is listed in the report (and its one-line
    error handed to ``on_error``) and the run goes on."""
    t0 = time.perf_counter()
    failed: list[str] = []

    def failure(line: str):
        failed.append(line)
        if on_error is not None:
            on_error(line)

    if options.masks:
        metrics, source, scope = _model_on_mask_folder(options, failure)
    elif options.results:
        metrics, source, scope = _results_on_coco(options)
    else:
        metrics, source, scope = _model_on_coco(options, failure)
    metrics["source"] = source
    metrics["threshold"] = options.threshold
    if "semantic" in metrics:
        metrics["images"] = "with the scored classes" if options.only_with_class else "all"
    metrics["failed_images"] = failed
    metrics.update(scope)
    return Report(metrics, time.perf_counter() - t0)


def _kind_threshold(o: Options, semantic: bool) -> None:
    """No --threshold: the default of the scored model's kind (a results file holds scores)."""
    if o.threshold is None:
        o.threshold = default_threshold(semantic)


def _model_on_mask_folder(o: Options, on_error) -> tuple[dict, str, dict]:
    seg = _load_model(o)
    _kind_threshold(o, seg.semantic)
    cid = min(o.classes) if o.classes else model_classes(seg)[0]
    with _bar(o, None) as bar:
        counts = semantic_folder(seg, o.images, o.masks, cid, o.threshold, o.limit, progress=bar, on_error=on_error)
    return {"semantic": counts.scores()}, f"{o.images} vs {o.masks}", {}


def _results_on_coco(o: Options) -> tuple[dict, str, dict]:
    gt, img_ids = _annotated(o)
    results = load_results(o.results)
    _kind_threshold(o, False)
    img_ids, scope = covered_by_results(gt, img_ids, results, o.results)
    if scoring_of_results(results, o.semantic, o.instance) == "instance":
        return coco_ap(gt, results, per_class=o.per_class, img_ids=img_ids), o.results, scope
    cids = _class_ids(o, sorted({r["category_id"] for r in results}))
    ids = _with_classes(o, gt, img_ids, cids)
    return _pixel_scores(gt, cids, lambda figures: semantic_coco_results(
        gt, results, ids, cids, o.threshold, figures=figures)), o.results, scope


def _model_on_coco(o: Options, on_error) -> tuple[dict, str, dict]:
    gt, img_ids = _annotated(o)
    img_ids, scope = present_in_folder(gt, img_ids, o.images)
    seg = _load_model(o)
    _kind_threshold(o, seg.semantic)
    source = f"{getattr(seg, 'name', '')} on {o.images}"
    if not (seg.semantic or o.semantic):
        with _bar(o, len(img_ids)) as bar:
            results = predict_coco(seg, gt, o.images, img_ids, Filter(o.classes, None, COCO_MAX_DETS),
                                   progress=bar, on_error=on_error)
        return coco_ap(gt, results, per_class=o.per_class, img_ids=img_ids), source, scope
    cids = _class_ids(o, model_classes(seg))
    ids = _with_classes(o, gt, img_ids, cids)
    with _bar(o, len(ids)) as bar:
        return _pixel_scores(gt, cids, lambda figures: semantic_coco(
            seg, gt, o.images, ids, cids, o.threshold, progress=bar, on_error=on_error,
            figures=figures, min_area=o.min_area)), source, scope


def _annotated(o: Options):
    """The annotation file and its image ids (the first ``limit`` of them)."""
    gt = load_coco(o.annotations)
    img_ids = sorted(gt.getImgIds())
    return gt, img_ids[: o.limit] if o.limit else img_ids


def _class_ids(o: Options, otherwise) -> tuple[int, ...]:
    return tuple(sorted(o.classes)) if o.classes else tuple(otherwise)


def _with_classes(o: Options, gt, img_ids: list[int], cids) -> list[int]:
    return images_with_classes(gt, img_ids, cids) if o.only_with_class else img_ids


def _pixel_scores(gt, cids, count: Callable[[PersonFigures], object]) -> dict:
    """IoU per class and the three person figures, from ``count(figures)`` (its PixelCounts)."""
    figures = PersonFigures(gt, cids)
    return {"semantic": count(figures).scores(), "figures": figures.scores()}


def _load_model(o: Options):
    from segkit.models import load_segmenter

    return load_segmenter(o.model, o.model_path, download=o.download, progress=o.progress,
                          imgsz=o.imgsz, iou=o.iou)


def _bar(o: Options, total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=not o.progress, file=sys.stderr, desc="evaluate")
