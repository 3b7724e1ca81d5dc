"""The IMU: pre-integration, gravity and bias alignment, the camera-motion control, the online buffer.

Conventions (all modules): stamps in s; angular rate (rad/s) and specific force (m/s^2, about +9.81 up at rest) in the
IMU frame I; gravity ``g_w`` in the filter's world frame; ``T_I_C`` maps camera points into I; a control is the camera
increment T_prev_curr with its right-perturbation covariance (:class:`prism_ros.core.types.Control`).

* :mod:`.preintegration`: :class:`ImuData`, :class:`ImuNoise`, :func:`preintegrate`;
* :mod:`.alignment`: static alignment (:func:`detect_motion`), biases and gravity from a pose track;
* :mod:`.integrator`: :class:`ImuIntegrator`, the camera increment between two stamps (offline path);
* :mod:`.buffer`, :mod:`.source`: :class:`ImuBuffer` and :class:`ImuControlSource`, the online path;
* :mod:`.monitor`: :class:`ImuStreamMonitor`, the per-sample checks of an IMU stream.
"""

from .alignment import (
    BiasEstimate,
    MotionCheck,
    align_gravity,
    detect_motion,
    estimate_biases,
    gravity_from_poses,
    static_bias_and_gravity,
)
from .buffer import TIMELINE_JUMP_S, ImuBuffer
from .integrator import (
    ZUPT_MAX_RATE_RADPS,
    ZUPT_SIGMA_MPS,
    ZUPT_WINDOW_S,
    ImuIntegrator,
    pose_fallback,
    zero_velocity,
)
from .monitor import DROP_CODES, ImuStreamMonitor, ImuVerdict, nonfinite_parts
from .preintegration import GRAVITY, ImuData, ImuNoise, Preintegrated, preintegrate
from .source import ImuControlSource

__all__ = [
    "GRAVITY",
    "ImuNoise",
    "ImuData",
    "Preintegrated",
    "preintegrate",
    "MotionCheck",
    "detect_motion",
    "static_bias_and_gravity",
    "align_gravity",
    "BiasEstimate",
    "estimate_biases",
    "gravity_from_poses",
    "ZUPT_WINDOW_S",
    "ZUPT_SIGMA_MPS",
    "ZUPT_MAX_RATE_RADPS",
    "zero_velocity",
    "pose_fallback",
    "ImuIntegrator",
    "TIMELINE_JUMP_S",
    "ImuBuffer",
    "ImuControlSource",
    "DROP_CODES",
    "ImuVerdict",
    "ImuStreamMonitor",
    "nonfinite_parts",
]
