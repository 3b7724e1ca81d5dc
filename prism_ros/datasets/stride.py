"""Every k-th frame of a dataset (``prism-ros run --stride k``: e.g. a 20 Hz camera at 10 Hz)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .base import Frame
from .capabilities import HasBodyFrame, HasConfigHints, HasControls, HasExactSdf, HasGroundTruthTwists, HasStampOrigin

__all__ = ["StridedDataset"]


class StridedDataset:
    """Frames 0, k, 2k, ... of ``base`` re-indexed 0, 1, 2, ...

    ``stamps``, ``gt_pose(s)``, ``gt_twists`` are the base's at the selected frames; ``control_between`` maps back
    to the base indices (the control spans the skipped interval).  The view keeps the base's ``camera`` and the
    capabilities that do not depend on the frame list (config hints, stamp origin, body frame, exact SDF) plus
    controls and ground-truth twists, mapped.
    """

    def __init__(self, base, stride: int):
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.base = base
        self.stride = int(stride)
        self._sel = np.arange(0, len(base), self.stride)
        self.name = f"{base.name}/stride{self.stride}" if self.stride > 1 else base.name
        self.camera = base.camera
        if isinstance(base, HasConfigHints):
            self.config_hints, self.config_hints_reason = base.config_hints, base.config_hints_reason
        if isinstance(base, HasStampOrigin):
            self.has_timestamps = base.has_timestamps
        if isinstance(base, HasBodyFrame):
            self.T_body_cam, self.to_body = base.T_body_cam, base.to_body
        if isinstance(base, HasExactSdf):
            self.sdf = base.sdf
        if isinstance(base, HasControls):
            self.control_between, self.restart_controls = self._control_between, base.restart_controls
        if isinstance(base, HasGroundTruthTwists):
            self.gt_twists = self._gt_twists

    def __len__(self) -> int:
        return int(len(self._sel))

    def _base_index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame index {i} out of range for {self.name} with {n} frames")
        return int(self._sel[i])

    def __getitem__(self, i: int) -> Frame:
        j = self._base_index(i)
        fr = self.base[j]
        return Frame(int(i) % len(self), fr.stamp, fr.rgb, fr.depth, fr.T_w_c_gt, fr.depth_sigma)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def stamps(self) -> np.ndarray:
        return np.asarray(self.base.stamps())[self._sel]

    def gt_pose(self, i: int) -> Optional[np.ndarray]:
        return self.base.gt_pose(self._base_index(i))

    def gt_poses(self) -> Optional[np.ndarray]:
        g = self.base.gt_poses()
        return None if g is None else g[self._sel]

    def _control_between(self, i_prev: int, i: int, state):
        return self.base.control_between(self._base_index(i_prev), self._base_index(i), state)

    def _gt_twists(self) -> np.ndarray:
        return np.asarray(self.base.gt_twists())[self._sel]
