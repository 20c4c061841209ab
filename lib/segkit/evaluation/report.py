"""Readable text of the evaluation metrics: AP and IoU tables, the three person figures."""
from __future__ import annotations

from segkit.evaluation.pixels import SIZE_BUCKETS


def format_report(report) -> str:
    """What ``segkit evaluate`` prints of a :class:`~segkit.evaluation.run.Report`."""
    m = report.metrics
    lines = [f"evaluate: {m['source']} ({report.seconds:.1f} s)"]
    if "images_scored" in m:
        lines.append(f"evaluate: scored {m['images_scored']} of {m['images_annotated']} annotated "
                     f"images ({m['images_which']})")
    lines.append(format_table(m))
    if m.get("figures"):
        lines.append(format_figures(m["figures"]))
    return "\n".join(lines)


def format_table(metrics: dict) -> str:
    """Readable text of what :func:`~segkit.evaluation.ap.coco_ap` /
    :meth:`~segkit.evaluation.pixels.PixelCounts.scores` return."""
    lines = []
    for iou_type in ("bbox", "segm"):
        m = metrics.get(iou_type)
        if not m:
            continue
        lines.append(f"{'box' if iou_type == 'bbox' else 'mask'} AP  " + "  ".join(
            f"{k} {_pct(m[k])}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
        if "per_class" in m:
            lines.append(f"  {'class':<16} {'AP':>6}")
            for name, ap in sorted(m["per_class"].items(), key=lambda kv: -kv[1]):
                lines.append(f"  {name:<16} {_pct(ap):>6}")
    sem = metrics.get("semantic")
    if sem:
        lines.append(f"{'class':<14} {'IoU':>6} {'prec':>6} {'recall':>6}   per image: "
                     f"{'IoU':>6} {'prec':>6} {'recall':>6}  images")
        for name, s in sem.items():
            lines.append(f"{name:<14} {_pct(s['iou']):>6} {_pct(s['precision']):>6} {_pct(s['recall']):>6}"
                         f"              {_pct(s['mean_iou']):>6} {_pct(s['mean_precision']):>6} "
                         f"{_pct(s['mean_recall']):>6}  {s['images']:>6}")
    return "\n".join(lines)


def format_figures(figures: dict) -> str:
    """Readable text of :meth:`~segkit.evaluation.pixels.PersonFigures.scores`."""
    lines = [f"{'class':<14} {'IoU all':>8} {'IoU w/':>8} {'FP w/o':>7}   recall by size "
             f"(<32², 32²-96², >96²)  images w/ | w/o"]
    for name, f in figures.items():
        r = f["recall_by_size"]
        sizes = "  ".join(f"{_pct(r[b]['recall']):>5} ({r[b]['instances']})" for b, _, _ in SIZE_BUCKETS)
        lines.append(f"{name:<14} {_pct(f['iou_all']):>8} {_pct(f['iou_with_class']):>8} "
                     f"{_pct(f['fp_share_without_class']):>7}   {sizes}  "
                     f"{f['images_with_class']} | {f['images_without_class']}")
    return "\n".join(lines)


def _pct(v) -> str:
    return "  n/a" if v is None or v < 0 else f"{100 * v:.1f}"
