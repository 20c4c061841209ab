"""DAVIS video object segmentation scores: region similarity J and boundary F per sequence.

The functions follow the DAVIS toolkit (davis2017-evaluation, ``davis2017/metrics.py``), so the
figures compare with published ones:

- ``jaccard(pred, gt)``: J, the IoU of two masks (1 when both are empty);
- ``seg2bmap(mask)``: the one-pixel boundary of a mask, as the toolkit's ``_seg2bmap``;
- ``boundary_f(pred, gt)``: F, the boundary F-measure: boundaries match within a tolerance of
  ``0.008`` of the image diagonal (a disk dilation), precision and recall -> F.

A tracked run is scored frame by frame by :class:`SequenceScorer` (memory: one number per track,
never the masks):

- **oracle J / F**: per frame, the predicted instance with the best IoU with the annotated
  object (whatever its track), averaged over the frames: the segmentation's ceiling;
- **track J / F**: the DAVIS unsupervised protocol: ONE track is chosen per sequence, the one with
  the best J over all frames; it scores as an empty mask on the frames where it is absent (J 0,
  F 0 when the object is annotated there), so an identity switch costs every frame after it.

All pure numpy / OpenCV on bool masks: the edge refinement (``--refine-edges``) reuses them to
measure F with and without.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

#: the toolkit's boundary tolerance: a fraction of the image diagonal (8 pixels at 854x480)
BOUND_TH = 0.008


# ----------------------------------------------------------------------------- per frame
def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: |pred & gt| / |pred | gt| of two bool masks; 1.0 when both are empty (DAVIS)."""
    pred, gt = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """bool [H,W]: the pixels of ``mask`` that differ from their east, south or south-east
    neighbour (the DAVIS toolkit's ``_seg2bmap`` at the mask's own size)."""
    seg = mask.astype(bool, copy=False)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: float) -> np.ndarray:
    """uint8 structuring element: the points with x² + y² <= r² (scikit-image's ``disk``)."""
    r = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(r, r)
    return (x ** 2 + y ** 2 <= radius ** 2).astype(np.uint8)


def bound_pixels(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> float:
    """The tolerance in pixels: ``bound_th`` itself when >= 1, else that fraction of the diagonal
    rounded up."""
    return bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(shape[0], shape[1]))


class Boundary:
    """A mask's boundary and its dilation by the tolerance disk, computed once (the annotation is
    compared with every predicted instance of its frame)."""

    def __init__(self, mask: np.ndarray, bound_th: float = BOUND_TH):
        self.edge = seg2bmap(mask)
        self.count = int(np.count_nonzero(self.edge))
        se = disk(bound_pixels(mask.shape, bound_th))
        self.dilated = cv2.dilate(self.edge.view(np.uint8), se).astype(bool) if self.count else self.edge


def f_measure(pred: Boundary, gt: Boundary) -> float:
    """F of two :class:`Boundary`: precision = predicted boundary pixels within the tolerance of
    the annotated boundary, recall the converse; the toolkit's rules for empty boundaries."""
    if pred.count == 0 and gt.count == 0:
        return 1.0
    if pred.count == 0 or gt.count == 0:
        return 0.0  # precision 1 / recall 0, or the converse
    precision = np.count_nonzero(pred.edge & gt.dilated) / pred.count
    recall = np.count_nonzero(gt.edge & pred.dilated) / gt.count
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F: the DAVIS boundary F-measure of two bool masks of one size."""
    return f_measure(Boundary(pred, bound_th), Boundary(gt, bound_th))


# ----------------------------------------------------------------------------- per sequence
@dataclass
class SequenceScore:
    """One sequence's figures (what the JSON output and the README table hold)."""

    sequence: str
    frames: int
    tracks: int                  # distinct track ids seen
    oracle_j: float
    track_j: float
    oracle_f: float
    track_f: float
    chosen_track: int | None     # the track scored as the object (None: nothing was predicted)
    chosen_frames: int           # frames in which the chosen track is present
    seconds: float = 0.0         # model + tracker, frames read included, model load excluded
    failed: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        """track J / oracle J (the target is >= 0.95)."""
        return self.track_j / self.oracle_j if self.oracle_j > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(fps=round(self.fps, 2), ratio=round(self.ratio, 4))
        for k in ("oracle_j", "track_j", "oracle_f", "track_f", "seconds"):
            d[k] = round(d[k], 4)
        return d


class SequenceScorer:
    """Feed it each frame's tracked result and annotation (``add``); ``score()`` gives J and F.

    Holds per track the sums of J and F over the frames it is present in; absent frames add the
    score of an empty mask, so it never keeps a mask."""

    def __init__(self, name: str, bound_th: float = BOUND_TH):
        self.name, self.bound_th = name, bound_th
        self.frames = 0
        self.oracle_j = self.oracle_f = 0.0
        self.empty_j = self.empty_f = 0.0           # what an absent track scores, summed
        self.track_j: dict[int, float] = {}         # track id -> sum of (J - empty J) where present
        self.track_f: dict[int, float] = {}
        self.track_frames: dict[int, int] = {}

    def add(self, masks: np.ndarray, track_ids: np.ndarray | None, gt: np.ndarray) -> None:
        """One frame: ``masks`` bool [N,H,W] predicted instances, ``track_ids`` int [N] (None:
        untracked, only the oracle figures mean something), ``gt`` the annotation (nonzero =
        the object)."""
        gt = gt.astype(bool, copy=False)
        gt_b = Boundary(gt, self.bound_th)
        empty = np.zeros_like(gt)
        e_j, e_f = jaccard(empty, gt), f_measure(Boundary(empty, self.bound_th), gt_b)
        self.frames += 1
        self.empty_j += e_j
        self.empty_f += e_f
        best_j, best_f = e_j, e_f
        seen: set[int] = set()
        for i, m in enumerate(masks):
            j = jaccard(m, gt)
            f = f_measure(Boundary(m, self.bound_th), gt_b)
            if j > best_j or (j == best_j and f > best_f):
                best_j, best_f = j, f
            if track_ids is not None:
                t = int(track_ids[i])
                if t in seen:
                    continue  # one mask per track and frame (a tracker never gives two)
                seen.add(t)
                self.track_j[t] = self.track_j.get(t, 0.0) + j - e_j
                self.track_f[t] = self.track_f.get(t, 0.0) + f - e_f
                self.track_frames[t] = self.track_frames.get(t, 0) + 1
        self.oracle_j += best_j
        self.oracle_f += best_f

    def score(self, seconds: float = 0.0, failed: list[str] | None = None) -> SequenceScore:
        n = max(self.frames, 1)
        chosen = None
        if self.track_j:
            # best J over all frames; ties go to the longer track, then the lower id
            chosen = max(self.track_j, key=lambda t: (self.track_j[t], self.track_frames[t], -t))
        track_j = (self.empty_j + (self.track_j[chosen] if chosen is not None else 0.0)) / n
        track_f = (self.empty_f + (self.track_f[chosen] if chosen is not None else 0.0)) / n
        return SequenceScore(self.name, self.frames, len(self.track_j), self.oracle_j / n, track_j,
                             self.oracle_f / n, track_f, chosen,
                             self.track_frames.get(chosen, 0) if chosen is not None else 0,
                             seconds, list(failed or []))


def mean_scores(scores: list[SequenceScore]) -> dict:
    """The means over sequences (DAVIS averages per sequence, not per frame)."""
    if not scores:
        return {}
    keys = ("oracle_j", "track_j", "oracle_f", "track_f")
    out = {k: round(float(np.mean([getattr(s, k) for s in scores])), 4) for k in keys}
    out["frames"] = sum(s.frames for s in scores)
    return out


# ----------------------------------------------------------------------------- the data set
def davis_sequences(root: str | Path, wanted: list[str] | None = None) -> list[tuple[str, list[Path], list[Path]]]:
    """(name, frame paths, annotation paths) per sequence of a DAVIS folder:
    ``ROOT/JPEGImages/480p/SEQ/*.jpg`` and ``ROOT/Annotations/480p/SEQ/*.png``, matched by stem.
    ValueError (one line) for a missing folder, an unknown sequence or frames without annotation."""
    root = Path(root)
    images, annotations = root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    for d in (images, annotations):
        if not d.is_dir():
            raise ValueError(f"{d}: no such folder (expected ROOT/JPEGImages/480p/SEQ/*.jpg and "
                             "ROOT/Annotations/480p/SEQ/*.png)")
    available = sorted(p.name for p in images.iterdir() if p.is_dir())
    names = wanted or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"{images}: no sequence {', '.join(unknown)} (there are: {', '.join(available) or 'none'})")
    out = []
    for name in names:
        frames = sorted(p for p in (images / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not frames:
            raise ValueError(f"{images / name}: no frames")
        gts = [annotations / name / f"{p.stem}.png" for p in frames]
        missing = [g for g in gts if not g.is_file()]
        if missing:
            raise ValueError(f"{missing[0]}: no annotation for frame {frames[gts.index(missing[0])].name}"
                             + (f" ({len(missing)} frames lack one)" if len(missing) > 1 else ""))
        out.append((name, frames, gts))
    return out


def read_annotation(path: Path) -> np.ndarray:
    """bool [H,W]: nonzero pixels of a DAVIS annotation PNG (palette or grey)."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise ValueError(f"{path}: not a readable annotation PNG")
    if m.ndim == 3:
        m = m.max(axis=2)
    return m > 0


# ----------------------------------------------------------------------------- a model on it
def evaluate_davis(root: str | Path, segmenter, result_filter, make_tracker, sequences: list[str] | None = None,
                   progress=None, on_error=None, stage=None, limit: int | None = None) -> list[SequenceScore]:
    """Run ``segmenter`` (filtered by ``result_filter``, tracked by a fresh ``make_tracker()`` per
    sequence) over each DAVIS sequence in frame order and score it. ``stage(seg, image) -> seg``,
    if given, runs after the tracker (e.g. temporal mask smoothing). ``progress.update(1)`` per
    frame. A frame that cannot be read is reported through ``on_error`` and left out. ``limit``:
    only the first frames of each sequence (quick checks).

    ``seconds`` of each score is the model's and the tracker's time (the frames' decoding and
    the scoring, which overlap with them on other threads, are not counted)."""
    from segkit.flow import Policy, run
    from segkit.io.sinks import Call
    from segkit.io.sources import Frames, prefetch_map, read_frame

    scores = []
    for name, frames, gts in davis_sequences(root, sequences):
        frames, gts = frames[:limit], gts[:limit]
        scorer = SequenceScorer(name)
        gt_of = {p.stem: g for p, g in zip(frames, gts)}
        after = stage() if stage is not None else None

        def score(frame, seg, scorer=scorer, gt_of=gt_of, after=after):
            if after is not None:
                seg = after(seg, frame.index)
            scorer.add(seg.masks, seg.track_ids, read_annotation(gt_of[frame.path.stem]))
            if progress is not None:
                progress.update(1)

        items = list(enumerate((p, f"{name}/{p.stem}") for p in frames))
        # frame indices in order: the tracker predicts motion over them
        with Frames(prefetch_map(lambda x: read_frame(x[1], index=x[0]), items, 1, 4), name, len(items)) as source:
            tracker = make_tracker()
            stats = run(source, segmenter, [Call(score)], result_filter=result_filter,
                        policy=Policy(writers=1, max_pending=4), on_error=on_error or (lambda line: None),
                        **({"tracker": tracker} if tracker is not None else {}))
        failed = [str(f.path) for f in stats.failures]
        scores.append(scorer.score(stats.model_s + getattr(stats, "track_s", 0.0), failed))
    return scores


def format_table(scores: list[SequenceScore]) -> str:
    """The per-sequence table (the README's), with the mean over sequences."""
    head = "| sequence | frames | oracle J | track J | track J / oracle J | oracle F | track F | tracks | fps |"
    rows = [head, "|" + "---|" * 9]
    for s in scores:
        rows.append(f"| {s.sequence} | {s.frames} | {s.oracle_j:.3f} | {s.track_j:.3f} | {s.ratio:.3f} | "
                    f"{s.oracle_f:.3f} | {s.track_f:.3f} | {s.tracks} | {s.fps:.1f} |")
    if len(scores) > 1:
        m = mean_scores(scores)
        ratio = m["track_j"] / m["oracle_j"] if m["oracle_j"] else 0.0
        rows.append(f"| mean | {m['frames']} | {m['oracle_j']:.3f} | {m['track_j']:.3f} | {ratio:.3f} | "
                    f"{m['oracle_f']:.3f} | {m['track_f']:.3f} | | |")
    return "\n".join(rows)
