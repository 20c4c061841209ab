"""The tracker as a stage of the one flow: what the model must hand it."""
from __future__ import annotations

from dataclasses import dataclass, fields

from segkit.flow import Filter
from segkit.segmentation import Segmentation


@dataclass
class DetectionFilter(Filter):
    """The run's filter, but an instance model's detections down to ``low_score`` are kept: the
    tracker's second stage uses them to follow an occluded object (ByteTrack's point). Semantic
    results keep the run's threshold, which is where their masks are cut."""

    low_score: float = 0.1

    @property
    def min_score(self) -> float:
        return min(self.threshold or 0.0, self.low_score)

    def __call__(self, seg: Segmentation) -> Segmentation:
        if seg.is_semantic:
            return super().__call__(seg)
        return seg.filter(self.classes, self.min_score if self.threshold is not None else None,
                          self.max_instances, self.min_area)


def detection_filter(result_filter: Filter, low_score: float) -> DetectionFilter:
    """``result_filter`` with every one of its settings (by name: Filter grows new ones)."""
    return DetectionFilter(**{f.name: getattr(result_filter, f.name) for f in fields(Filter)},
                           low_score=low_score)
