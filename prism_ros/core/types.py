"""Plain data types exchanged between the filter core, the tools and the ROS node."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

__all__ = ["Control", "StepOutcome", "StepResult"]


class StepOutcome(enum.Enum):
    """What a filter step did with the frame (code branches on this, not on ``status``)."""

    INITIALISED = "initialised"  # the first frame: it started the map
    OK = "ok"  # tracked and fused
    # re-tracked after a loss, a gap, a jump or a doubtful track; fused; velocity: the step from a
    # tracked previous frame, else at rest
    RECOVERED = "recovered"
    # pose = prediction with an inflated covariance; nothing fused; velocity from the IMU (short losses) or at rest
    LOST = "lost"

    @property
    def tracked(self) -> bool:
        return self is not StepOutcome.LOST


@dataclass
class Control:
    """A motion increment used as a control in the dynamics (IMU or odometry).

    ``T_prev_curr`` maps the current camera frame into the previous one; ``cov``: its 6x6 covariance, right
    perturbation T = T_prev_curr Exp(xi), xi = (rho, phi).  An IMU control also gives ``nu_curr`` = (v, w), the
    camera twist at the current frame (current camera frame), with ``nu_cov``; ``still``: the IMU stands still (a
    zero-velocity update: ``nu_curr``'s linear part zero, its angular part the interval's mean gyro rate, no
    translation).
    """

    T_prev_curr: np.ndarray
    cov: np.ndarray
    nu_curr: Optional[np.ndarray] = None
    nu_cov: Optional[np.ndarray] = None
    still: bool = False


@dataclass
class StepResult:
    """What one filter step returns (conventions: docs/design.md, "Conventions").

    * ``T_w_c``: 4x4 camera-to-world pose; ``pose_cov``: 6x6 covariance of xi in T = T_w_c Exp(xi), xi = (rho, phi)
      (right perturbation; to ROS with :func:`prism_ros.core.se3.cov_body_to_world`): the pose's error relative to
      the map; ``step_cov``: the step's from the previous frame; ``error_cov`` / ``error_transition`` (12x12): the
      error state behind both (:mod:`prism_ros.core.uncertainty`; none of them is the filter's internal weighting).
    * ``velocity``: (vx, vy, vz, wx, wy, wz) in the camera (body) frame, m/s and rad/s; ``velocity_cov``: its 6x6
      covariance (same order and frame, as ROS twists).
    * ``outcome``: a :class:`StepOutcome`; ``tracking_ok`` is ``outcome.tracked`` (the frame was fused exactly then);
      ``status``: human-readable outcome and reason (for logs).
    """

    stamp: float
    T_w_c: np.ndarray
    pose_cov: np.ndarray
    velocity: np.ndarray
    velocity_cov: np.ndarray
    tracking_ok: bool
    inlier_ratio: float = 0.0
    iterations: int = 0
    outcome: StepOutcome = StepOutcome.OK
    timings_ms: Dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    #: (compared, inside 2 sigma) pixels of the depth-predictive map check before fusion
    #: (:mod:`prism_ros.core.predictive`); None when nothing was fused
    depth_check: Optional[Tuple[int, int]] = None
    step_cov: Optional[np.ndarray] = None
    error_cov: Optional[np.ndarray] = None
    error_transition: Optional[np.ndarray] = None

    @property
    def step_covariance(self) -> np.ndarray:
        """``step_cov``, or ``pose_cov`` for a result that carries no error state (built outside the filter)."""
        return self.pose_cov if self.step_cov is None else self.step_cov

    def report(self, err) -> "StepResult":
        """Carry the reported uncertainty ``err`` (an :class:`~prism_ros.core.uncertainty.ErrorReport`)."""
        self.pose_cov, self.step_cov = err.pose_cov, err.step_cov
        self.error_cov, self.error_transition = err.error_cov, err.error_transition
        return self
