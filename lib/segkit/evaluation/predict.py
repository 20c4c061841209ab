"""A model run over an evaluation set: COCO images into COCO results (for AP) or pixel counts
against the annotation file, a folder of images into pixel counts against its masks."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterator

from segkit.errors import InputError, SegkitError
from segkit.evaluation.ap import COCO_MAX_DETS
from segkit.evaluation.coco import coco_class_truth
from segkit.evaluation.pixels import PersonFigures, PixelCounts, predicted_class_masks
from segkit.flow import Filter, run
from segkit.io.sinks import Call
from segkit.segmentation import Segmentation
from segkit.io.sources import Frame, Frames, prefetch_map, read_image


def predict_coco(segmenter, gt, image_dir: str | Path, img_ids: list[int],
                 result_filter: Filter | None = None, progress=None,
                 on_error: Callable[[str], None] | None = None) -> list[dict]:
    """Run ``segmenter`` over COCO images -> COCO results with the annotation file's image ids."""
    results: list[dict] = []
    lock = threading.Lock()

    def write(frame: Frame, seg: Segmentation):
        res = seg.to_coco_results(frame.index)
        with lock:
            results.extend(res)

    _run(_coco_frames(gt, image_dir, img_ids), segmenter, write,
         result_filter or Filter(max_instances=COCO_MAX_DETS), on_error, progress)
    return results


def _coco_frames(gt, image_dir, img_ids) -> Iterator[Frame]:
    """Decoded COCO images (frame.index = COCO image id), in a reading thread pool."""
    image_dir = Path(image_dir)

    def read(iid):
        info = gt.imgs[iid]
        path = image_dir / info["file_name"]
        try:
            img = read_image(path)
            if img.shape[:2] != (info["height"], info["width"]):
                raise InputError(path, f"image is {img.shape[1]}x{img.shape[0]} but the annotation file "
                                       f"says {info['width']}x{info['height']}")
            return Frame(img, Path(info["file_name"]).stem, path, iid)
        except InputError as e:
            return Frame(None, Path(info["file_name"]).stem, path, iid, error=e)

    return prefetch_map(read, img_ids)


def semantic_coco(segmenter, gt, image_dir, img_ids: list[int], class_ids: tuple[int, ...],
                  threshold: float, progress=None, on_error=None,
                  figures: PersonFigures | None = None, min_area: float | None = None) -> PixelCounts:
    """Run a model over COCO images and count pixels against the union of instances
    (``figures``, if given, sees every image's masks too)."""
    counts = PixelCounts(class_ids)

    def write(frame: Frame, seg: Segmentation):
        pred, truth = predicted_class_masks(seg, class_ids), coco_class_truth(gt, frame.index, class_ids)
        counts.add(pred, truth)
        if figures is not None:
            figures.add(frame.index, pred, truth)

    _run(_coco_frames(gt, image_dir, img_ids), segmenter, write,
         Filter(set(class_ids), threshold, min_area=min_area), on_error, progress)
    return counts


def semantic_folder(segmenter, images_dir, masks_dir, class_id: int, threshold: float,
                    limit: int | None = None, progress=None, on_error=None) -> PixelCounts:
    """images/N.* against masks/N.png (nonzero = the class), for one-class (person) models."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    pairs = []
    for img in sorted(images_dir.iterdir()):
        mask = masks_dir / f"{img.stem}.png"
        if img.is_file() and not img.name.startswith(".") and mask.is_file():
            pairs.append((img, mask))
    if not pairs:
        raise SegkitError(f"{images_dir}: no image has a mask of the same name in {masks_dir}")
    pairs = pairs[:limit] if limit else pairs
    counts = PixelCounts((class_id,))
    mask_of = dict(pairs)

    def read(pair):
        img, _ = pair
        try:
            return Frame(read_image(img), img.stem, img)
        except InputError as e:
            return Frame(None, img.stem, img, error=e)

    def write(frame: Frame, seg: Segmentation):
        truth = read_image(mask_of[frame.path])[..., 0] > 127
        if truth.shape != (seg.height, seg.width):
            raise InputError(mask_of[frame.path], f"mask is {truth.shape[1]}x{truth.shape[0]}, "
                                                  f"image is {seg.width}x{seg.height}")
        counts.add(predicted_class_masks(seg, (class_id,)), truth[None])

    _run(prefetch_map(read, pairs), segmenter, write, Filter({class_id}, threshold), on_error, progress)
    return counts


def _run(frames, segmenter, write, result_filter: Filter, on_error, progress) -> None:
    """The one flow, with the scoring function as its sink (on_error: one line per failed image)."""
    with Frames(frames) as source:
        run(source, segmenter, [Call(write)], result_filter=result_filter, progress=progress,
            **({"on_error": on_error} if on_error else {}))
