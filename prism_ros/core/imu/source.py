"""The IMU control source of the online path: :class:`ImuControlSource` over an :class:`ImuBuffer`.

Between two frames (stamps t0 < t1, s) it gives the IMU's camera increment (:meth:`ImuBuffer.control`) from the filter's
state at t0, or None (the filter runs its constant-velocity model) with the reason in :attr:`ImuControlSource.note`: a
gap over ``control_max_dt_s``, samples that do not cover the interval (or an IMU gap in it), or a refused moving start
(the buffer then aligns from ``pose_alignment_s`` of the filter's poses).  With ``bias_window_s`` > 0 the biases are
refined about once a second from that much pose track (:meth:`ImuBuffer.refine_biases`).
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from ..types import Control
from .alignment import BiasEstimate
from .buffer import ImuBuffer

__all__ = ["ImuControlSource"]


class ImuControlSource:
    """IMU controls from an :class:`ImuBuffer` (module docstring).  ``state``: the filter's
    :class:`~prism_ros.core.dynamics.MotionState` at t0; :attr:`note`: why the last :meth:`control` gave none;
    :attr:`bias_estimate`: the last bias refinement.
    """

    def __init__(self, buffer: ImuBuffer, control_max_dt_s: float, bias_window_s: float = 0.0):
        self.buffer = buffer
        self.control_max_dt_s = float(control_max_dt_s)
        self.bias_window_s = float(bias_window_s)
        self.note: Optional[str] = None
        self.bias_estimate: Optional[BiasEstimate] = None
        self._poses: deque = deque()  # (stamp, T_w_c) of the filter's recent states
        self._last_refine = -np.inf

    def control(self, t0: float, t1: float, state) -> Optional[Control]:
        """The camera increment from t0 to t1, or None (see :attr:`note`)."""
        self.note = None
        if t1 - t0 > self.control_max_dt_s:
            self.note = f"{t1 - t0:.3f} s since the last frame (> control_max_dt_s); using the constant-velocity model"
            return None
        self._refine_biases(t0, state.T_w_c)
        ctl = self.buffer.control(t0, t1, state.T_w_c, state.nu, state.P, state.Sigma)
        if ctl is None and self.buffer.init_check is not None and self.buffer.static_start is False:
            why = "; ".join(self.buffer.init_check.reasons or ["the sensor moves"])
            self.note = (
                f"IMU: moving start, no static gravity alignment ({why}); constant velocity until a "
                f"still window or {self.buffer.pose_alignment_s} s of tracked poses give gravity"
            )
        elif ctl is None:
            self.note = (
                f"no IMU data covering [{t0:.3f}, {t1:.3f}] s (or an IMU gap); using the constant-velocity model"
            )
        return ctl

    def _refine_biases(self, t: float, T_w_c: np.ndarray) -> None:
        if self.bias_window_s <= 0:
            return
        self._poses.append((float(t), np.asarray(T_w_c, dtype=np.float64).copy()))
        while self._poses and t - self._poses[0][0] > self.bias_window_s:
            self._poses.popleft()
        if t - self._last_refine < 1.0 or len(self._poses) < 3 or t - self._poses[0][0] < 0.5 * self.bias_window_s:
            return
        self._last_refine = t
        est = self.buffer.refine_biases(np.array([p[0] for p in self._poses]), np.stack([p[1] for p in self._poses]))
        if est is not None:
            self.bias_estimate = est

    def tracking_lost(self) -> None:
        """The last step did not track (its pose is the IMU's own prediction): the bias window restarts."""
        self._poses.clear()

    def reset(self, clear: bool) -> None:
        """The filter restarted (its world moved): re-estimate gravity; ``clear`` also drops the samples."""
        self._poses.clear()
        self._last_refine = -np.inf
        if clear:
            self.buffer.clear()
        else:
            self.buffer.reset_alignment()
