"""Tracking (``--track``): identities that persist across a video's frames.

A stateful stage of the one flow, after the filter: ``Tracker.update(seg, frame_index)`` gives
each instance a ``track_id``. See tracker.py for the algorithm (ByteTrack-style)."""
from segkit.track.tracker import Detections, Tracker, TrackSettings

__all__ = ["Detections", "Tracker", "TrackSettings"]
