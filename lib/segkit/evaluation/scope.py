"""What is scored: which of the annotated images (those a results file or an image folder
covers; scoring every annotated image would count the ones never segmented as misses), which
classes, and how (AP or IoU)."""
from __future__ import annotations

from pathlib import Path

from segkit.errors import SegkitError


def covered_by_results(gt, img_ids: list[int], results: list[dict], results_path) -> tuple[list[int], dict]:
    """The annotated images a results file covers: those it has detections for, plus those
    segment_folder.py processed without finding anything (its per-image records beside the file)."""
    seen = {r.get("image_id") for r in results}
    records = Path(results_path).parent / ".segkit" / "results"
    if records.is_dir():
        by_file = {Path(info["file_name"]).stem: iid for iid, info in gt.imgs.items()}
        for rec in records.rglob("*.json"):
            stem = rec.stem
            iid = by_file.get(stem, int(stem) if stem.isdigit() else None)
            if iid is not None:
                seen.add(iid)
        how = "segmented by segment_folder.py"
    else:
        how = "with at least one detection; images segmented without one cannot be told apart"
    wanted = set(img_ids)
    covered = sorted(i for i in seen if i in wanted)
    if not covered:
        raise SegkitError(f"{results_path}: covers none of the {len(img_ids)} annotated images "
                          "(image ids differ? write results with --coco-annotations)")
    return covered, _scope(covered, img_ids, how)


def present_in_folder(gt, img_ids: list[int], image_dir) -> tuple[list[int], dict]:
    """The annotated images whose file is in ``image_dir`` (a partial copy of val2017 scores what it holds)."""
    folder = Path(image_dir)
    if not folder.is_dir():
        raise SegkitError(f"{folder}: no such folder")
    names = {p.name for p in folder.iterdir()}
    present = [i for i in img_ids if gt.imgs[i]["file_name"] in names]
    if not present:
        raise SegkitError(f"{folder}: holds none of the {len(img_ids)} annotated images")
    return present, _scope(present, img_ids, f"found in {folder}")


def _scope(scored: list[int], annotated: list[int], which: str) -> dict:
    """What the report says about the images scored (keys of the metrics file)."""
    return {"images_scored": len(scored), "images_annotated": len(annotated), "images_which": which}


def scoring_of_results(results: list[dict], semantic: bool = False, instance: bool = False) -> str:
    """IoU ("semantic") for a person model's results (segkit marks them), else AP ("instance");
    ``semantic`` / ``instance`` (the flags) decide instead when given."""
    if semantic or instance:
        return "semantic" if semantic else "instance"
    return "semantic" if results and all(r.get("semantic") for r in results) else "instance"


def model_classes(segmenter) -> list[int]:
    """Classes a model predicts: a semantic adapter names its channels; instance: all COCO."""
    ids = getattr(segmenter, "class_ids", None)
    if ids:
        return list(ids)
    from segkit.labels import COCO_CATEGORIES
    return sorted(COCO_CATEGORIES)
