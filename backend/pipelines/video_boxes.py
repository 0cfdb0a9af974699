"""Carrying an annotator's video boxes through the following frames: the process's SAM 2 video tracker
(`backend.adapters.sam2_video`) behind the device gate. Seeds in (`BoxSeed`: object id, frame offset, pixel box),
one `PropagatedTrack` per seed out; the caller decodes the frames and turns tracks into Label Studio regions
(`backend.predictions.propagation`)."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from backend.adapters.base import LazyModel
from backend.adapters.sam2_video import BoxSeed, PropagatedTrack, VideoObjectTracker
from backend.core.device import DeviceGate

__all__ = ["BoxCarrier", "BoxSeed", "PropagatedTrack"]


class BoxCarrier:
    """`carry(frames, seeds, priority, stop)`: the tracker (loaded on first use) on the device at `priority`, held
    one frame at a time (a smart-tool click waits for at most one frame of a long clip)."""

    def __init__(self, tracker: LazyModel[VideoObjectTracker], gate: DeviceGate):
        self.tracker = tracker
        self.gate = gate

    def carry(self, frames: Iterable[np.ndarray], seeds: list[BoxSeed], priority: int,
              stop: Callable[[], bool] | None = None) -> list[PropagatedTrack]:
        """uint8 (H, W, 3) frames (lazily decoded) and seeds → tracks (see `VideoObjectTracker.propagate`).
        Raises `ModelUnavailable` when the tracker cannot load."""
        model = self.tracker.get()
        return model.propagate(frames, seeds, stop=stop, hold=lambda: self.gate.hold(priority))
