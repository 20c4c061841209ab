"""A ByteTrack-style multi-object tracker over segkit results.

    tracker = Tracker()                       # settings: segkit/defaults.yaml's ``track:``
    for frame in frames:                      # in order; indices may skip (dropped frames)
        seg = tracker.update(seg, frame.index)   # the tracked instances, with seg.track_ids

Each frame (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box"):

1. every track's box is predicted to this frame by a constant-velocity Kalman filter (once per
   frame index, so a gap of dropped frames is predicted over, not mistaken for a stop);
2. detections scoring >= ``high_score`` are matched to the confirmed tracks, live and lost, on
   overlap: the predicted box's IoU times the detection's score; where boxes are ambiguous (a
   track near two detections, or a detection near two tracks) the IoU of the track's last mask,
   moved with the prediction, is blended in for tracks seen in the previous frame;
3. detections between ``low_score`` and ``high_score`` (an occluded or blurred object) are
   matched to the live tracks still unmatched, on box IoU only; those still unmatched are lost;
4. a track started in the previous frame is confirmed by a match now, or dropped;
5. high detections left over (>= ``new_track_score``) start tracks. Ids are given on
   confirmation, so they count 1, 2, 3... without the gaps of single-frame false positives;
6. a lost track is kept ``max_age`` frame indices, then forgotten.

Tracks match detections of their own class only (``per_class``). The result holds the detections
matched to confirmed tracks (and, on the first frame, every new track), with their ids, as
Ultralytics' track mode returns them. ``state_dict()`` / ``Tracker.from_state()`` carry the whole
state as JSON-able data; ``step(Detections)`` is the same update without full-size masks, what a
resumed folder run replays from its saved detections.
"""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, fields

import numpy as np

from segkit.segmentation import Segmentation
from segkit.track import kalman
from segkit.track.instances import instances_of, take
from segkit.track.matching import FORBIDDEN, assign, box_iou, grid_step, mask_grid, mask_iou

STATE_VERSION = 1
#: box IoU above which a track and a detection count as candidates for each other
AMBIGUOUS_IOU = 0.1


@dataclass(frozen=True)
class TrackSettings:
    """The ``track:`` mapping of segkit/defaults.yaml (each key is documented there)."""

    high_score: float | None = None        # None: the run's threshold (see detection_filter)
    low_score: float = 0.1
    new_track_score: float | None = None   # None: high_score
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    unconfirmed_match_iou: float = 0.3
    max_age: int = 30
    mask_weight: float = 0.3
    fuse_score: bool = True
    per_class: bool = True
    min_blob: float = 0.0005

    @classmethod
    def from_defaults(cls, **given) -> "TrackSettings":
        """defaults.yaml's values, with those in ``given`` that are not None instead."""
        from segkit.config import DEFAULTS

        names = {f.name for f in fields(cls)}
        base = dict(DEFAULTS.get("track") or {})
        unknown = set(base) - names
        if unknown:
            raise ValueError(f"track: unknown setting(s) {', '.join(sorted(unknown))}")
        base.update({k: v for k, v in given.items() if v is not None})
        return cls(**{k: v for k, v in base.items() if k in names})

    @property
    def high(self) -> float:
        """high_score, or the instance models' default threshold when no run has set it."""
        if self.high_score is not None:
            return self.high_score
        from segkit.config import default_threshold

        return default_threshold(False)

    @property
    def start_score(self) -> float:
        return self.high if self.new_track_score is None else self.new_track_score


@dataclass
class Detections:
    """What the tracker reads of one frame's result: boxes, scores, classes and coarse masks.

    Small (a few kilobytes), so a folder run can save it per frame and replay it on resume."""

    boxes: np.ndarray      # float32 [N,4] x0,y0,x1,y1
    scores: np.ndarray     # float32 [N]
    class_ids: np.ndarray  # int32 [N]
    grids: np.ndarray      # bool [N,h,w]: masks on the coarse grid (matching.mask_grid)
    step: int = 1          # image pixels per grid cell

    @classmethod
    def of(cls, seg: Segmentation) -> "Detections":
        """From an instance result (see instances.instances_of)."""
        return cls(np.asarray(seg.boxes, np.float32).reshape(-1, 4), np.asarray(seg.scores, np.float32),
                   np.asarray(seg.class_ids, np.int32), mask_grid(seg.masks, seg.boxes),
                   grid_step(seg.height, seg.width))

    def __len__(self) -> int:
        return len(self.scores)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"boxes": self.boxes, "scores": self.scores, "class_ids": self.class_ids,
                "grids": self.grids, "step": np.asarray(self.step)}

    @classmethod
    def from_arrays(cls, a) -> "Detections":
        return cls(np.asarray(a["boxes"], np.float32), np.asarray(a["scores"], np.float32),
                   np.asarray(a["class_ids"], np.int32), np.asarray(a["grids"], bool), int(a["step"]))


@dataclass
class Track:
    mean: np.ndarray        # Kalman state [8] at frame ``at``
    cov: np.ndarray         # [8,8]
    class_id: int
    score: float
    start: int              # frame index of the first detection
    last: int               # frame index of the last matched detection
    at: int                 # frame index the Kalman state is predicted to
    id: int = 0             # 0 until confirmed
    lost: bool = False
    hits: int = 1
    grid: np.ndarray | None = None     # the last mask on the coarse grid
    grid_xy: tuple[float, float] = (0.0, 0.0)  # box centre when that mask was seen


class Tracker:
    """ByteTrack-style tracking of a video's instances (see the module docstring)."""

    def __init__(self, settings: TrackSettings | None = None, **given):
        self.settings = settings or TrackSettings.from_defaults(**given)
        self.tracks: list[Track] = []
        self.frame: int | None = None   # the last frame index seen
        self.next_id = 1

    # ------------------------------------------------------------------ the public step
    def detection_filter(self, result_filter):
        """``result_filter`` for the model's side of a tracked run (see track/stage.py): the low
        scores the second matching stage needs are kept. A tracker whose settings leave
        ``high_score`` open takes the run's threshold as it: what an untracked run keeps is what
        may start a track."""
        from dataclasses import replace

        from segkit.track.stage import detection_filter

        if self.settings.high_score is None and result_filter.threshold is not None:
            self.settings = replace(self.settings, high_score=float(result_filter.threshold))
        return detection_filter(result_filter, self.settings.low_score)

    def update(self, seg: Segmentation, frame_index: int) -> Segmentation:
        """``seg``'s instances that belong to confirmed tracks, with ``track_ids``.

        ``frame_index`` must grow from call to call; a gap is predicted over. A semantic result
        is first split into blobs (instances.instances_of)."""
        inst, dets = self.detections_of(seg)
        idx, ids = self.step(dets, frame_index)
        return take(inst, idx, ids)

    def detections_of(self, seg: Segmentation) -> tuple[Segmentation, Detections]:
        """(the instance result the tracker follows, what it reads of it)."""
        inst = instances_of(seg, self.settings.min_blob)
        return inst, Detections.of(inst)

    def step(self, dets: Detections, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """One frame: (indices of the detections given an id, their ids)."""
        frame_index = int(frame_index)
        if self.frame is not None and frame_index <= self.frame:
            raise ValueError(f"frame {frame_index} after frame {self.frame}: frames must come in order")
        first = self.frame is None
        s = self.settings
        # forget the tracks lost too long first: what is left is predicted at most max_age frames
        self.tracks = [t for t in self.tracks if frame_index - t.last <= s.max_age]
        self._predict_to(frame_index)

        high = np.flatnonzero(dets.scores >= s.high)
        low = np.flatnonzero((dets.scores >= s.low_score) & (dets.scores < s.high))
        confirmed = [t for t in self.tracks if t.id]
        unconfirmed = [t for t in self.tracks if not t.id]
        out: dict[int, Track] = {}  # detection index -> its track

        # 1. high-score detections <-> confirmed tracks, live or lost
        pairs, left_tracks, left_high = assign(self._cost(confirmed, dets, high, s.fuse_score), 1 - s.match_iou)
        self._match([confirmed[ti] for ti, _ in pairs], dets, high[[di for _, di in pairs]], frame_index, out)
        # 2. low-score detections <-> live tracks still unmatched
        live = [confirmed[i] for i in left_tracks if not confirmed[i].lost]
        pairs, left_live, _ = assign(self._cost(live, dets, low, False, masks=False), 1 - s.low_match_iou)
        self._match([live[ti] for ti, _ in pairs], dets, low[[di for _, di in pairs]], frame_index, out)
        for i in left_live:
            live[i].lost = True
        # 3. tracks started last frame: confirmed by a match now, else dropped
        rest = high[left_high]
        pairs, left_new, left_rest = assign(self._cost(unconfirmed, dets, rest, s.fuse_score),
                                            1 - s.unconfirmed_match_iou)
        self._match([unconfirmed[ti] for ti, _ in pairs], dets, rest[[di for _, di in pairs]], frame_index, out)
        for ti, _ in pairs:
            unconfirmed[ti].id, self.next_id = self.next_id, self.next_id + 1
        dropped = {id(unconfirmed[i]) for i in left_new}
        self.tracks = [t for t in self.tracks if id(t) not in dropped]
        # 4. new tracks from what is left (confirmed at once on the first frame)
        for di in rest[left_rest]:
            if dets.scores[di] < s.start_score:
                continue
            t = self._start(dets, int(di), frame_index)
            if first:
                t.id, self.next_id = self.next_id, self.next_id + 1
                out[int(di)] = t
            self.tracks.append(t)
        self.frame = frame_index
        idx = np.array(sorted(out), np.int64)
        return idx, np.array([out[i].id for i in idx], np.int64)

    # ------------------------------------------------------------------ internals
    def _predict_to(self, frame_index: int) -> None:
        """Every track's Kalman state predicted frame by frame up to ``frame_index``."""
        if not self.tracks:
            return
        for t in self.tracks:
            if t.lost:
                t.mean[7] = 0.0  # a lost track keeps its size (ByteTrack does the same)
        while True:
            behind = [t for t in self.tracks if t.at < frame_index]
            if not behind:
                return
            mean, cov = kalman.predict(np.stack([t.mean for t in behind]), np.stack([t.cov for t in behind]))
            for t, m, c in zip(behind, mean, cov):
                t.mean, t.cov, t.at = m, c, t.at + 1

    def _cost(self, tracks: list[Track], dets: Detections, det_idx: np.ndarray, fuse: bool,
              masks: bool = True) -> np.ndarray:
        if not tracks or not len(det_idx):
            return np.zeros((len(tracks), len(det_idx)))
        s = self.settings
        sim = box_iou(kalman.xyah_to_xyxy(np.stack([t.mean[:4] for t in tracks])), dets.boxes[det_idx])
        if masks and s.mask_weight > 0 and dets.grids.size:
            # where boxes are ambiguous (a track overlapping two detections, or a detection two
            # tracks: people crossing), the masks of tracks seen in the previous frame, moved as
            # the Kalman filter predicts, help tell them apart
            near = sim > AMBIGUOUS_IOU
            ambiguous = (near.sum(1) > 1)[:, None] | (near.sum(0) > 1)[None, :]
            use = [i for i, t in enumerate(tracks) if ambiguous[i].any() and t.grid is not None and not t.lost
                   and t.grid.shape == dets.grids.shape[1:]]
            if use:
                moved = np.stack([_shift(tracks[i].grid, tracks[i].mean[:2] - tracks[i].grid_xy, dets.step)
                                  for i in use])
                blend = (1 - s.mask_weight) * sim[use] + s.mask_weight * mask_iou(moved, dets.grids[det_idx])
                sim[use] = np.where(ambiguous[use], blend, sim[use])
        if fuse:
            sim = sim * dets.scores[det_idx][None, :]
        cost = 1.0 - sim
        if s.per_class:
            cost[np.array([t.class_id for t in tracks])[:, None] != dets.class_ids[det_idx][None, :]] = FORBIDDEN
        return cost

    def _match(self, tracks: list[Track], dets: Detections, det_idx: np.ndarray, frame_index: int,
               out: dict) -> None:
        """Correct ``tracks`` with their detections (one batched Kalman update) and note them."""
        if not tracks:
            return
        mean, cov = kalman.update(np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks]),
                                  kalman.xyxy_to_xyah(dets.boxes[det_idx]))
        for t, m, c, di in zip(tracks, mean, cov, det_idx):
            t.mean, t.cov = m, c
            t.score, t.last, t.lost, t.hits = float(dets.scores[di]), frame_index, False, t.hits + 1
            self._remember_mask(t, dets, di)
            out[int(di)] = t

    def _start(self, dets: Detections, di: int, frame_index: int) -> Track:
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(dets.boxes[di]))
        t = Track(mean[0], cov[0], int(dets.class_ids[di]), float(dets.scores[di]), frame_index, frame_index,
                  frame_index)
        self._remember_mask(t, dets, di)
        return t

    @staticmethod
    def _remember_mask(t: Track, dets: Detections, di: int) -> None:
        if dets.grids.size:
            t.grid = dets.grids[di]  # a view: the frame's small grid array lives on with it
            t.grid_xy = (float(t.mean[0]), float(t.mean[1]))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The whole state as JSON-able data (floats exact through json)."""
        return {"version": STATE_VERSION, "frame": self.frame, "next_id": self.next_id,
                "settings": asdict(self.settings),
                "tracks": [{"id": t.id, "mean": t.mean.tolist(), "cov": t.cov.ravel().tolist(),
                            "class_id": t.class_id, "score": t.score, "start": t.start, "last": t.last,
                            "at": t.at, "lost": t.lost, "hits": t.hits, "grid_xy": list(t.grid_xy),
                            "grid": None if t.grid is None else
                            {"shape": list(t.grid.shape),
                             "bits": base64.b64encode(np.packbits(t.grid.ravel())).decode("ascii")}}
                           for t in self.tracks]}

    @classmethod
    def from_state(cls, state: dict, settings: TrackSettings | None = None) -> "Tracker":
        """A tracker that goes on where ``state_dict()`` left off (its settings unless given)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"tracker state version {state.get('version')!r}, expected {STATE_VERSION}")
        tracker = cls(settings or TrackSettings(**state["settings"]))
        tracker.frame, tracker.next_id = state["frame"], int(state["next_id"])
        for d in state["tracks"]:
            grid = None
            if d["grid"] is not None:
                shape = tuple(d["grid"]["shape"])
                bits = np.frombuffer(base64.b64decode(d["grid"]["bits"]), np.uint8)
                grid = np.unpackbits(bits)[:int(np.prod(shape))].astype(bool).reshape(shape)
            tracker.tracks.append(Track(np.array(d["mean"], np.float64), np.array(d["cov"], np.float64).reshape(8, 8),
                                        int(d["class_id"]), float(d["score"]), int(d["start"]), int(d["last"]),
                                        int(d["at"]), int(d["id"]), bool(d["lost"]), int(d["hits"]), grid,
                                        tuple(d["grid_xy"])))
        return tracker


def _shift(grid: np.ndarray, delta_xy, step: int) -> np.ndarray:
    """``grid`` moved by ``delta_xy`` image pixels (whole cells; what leaves the grid is lost)."""
    dx, dy = (int(round(float(v) / step)) for v in delta_xy)
    if dx == 0 and dy == 0:
        return grid
    h, w = grid.shape
    out = np.zeros_like(grid)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = grid[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out
