"""What a dataset can do beyond the :class:`~prism_ros.datasets.base.Dataset` protocol.

Each capability is a runtime-checkable :class:`typing.Protocol`: a reader declares one by defining its members, tools
ask ``isinstance(ds, HasX)``; a wrapper (e.g. :class:`~prism_ros.datasets.stride.StridedDataset`) keeps those of its
base that stay true.

=====================  =================================================  ==========================
capability             members                                            readers
=====================  =================================================  ==========================
HasConfigHints         ``config_hints``, ``config_hints_reason``          every DatasetBase reader
HasStampOrigin         ``has_timestamps``                                 every DatasetBase reader
HasBodyFrame           ``T_body_cam``, ``to_body(T_w_c)``                 EuRoC (folder, bag)
HasControls            ``control_between(i_prev, i, state)``,             EuRoC (folder, bag)
                       ``restart_controls()``
HasImu                 ``imu``, ``imu_ns``, ``imu_noise``, ``T_imu_cam``  EuRoC (folder, bag)
HasStereo              ``stereo``                                         EuRoC (folder, bag)
HasFrameNs             ``frame_ns``                                       EuRoC (folder, bag)
HasExactSdf            ``sdf(points)``                                    the synthetic sequence
HasGroundTruthTwists   ``gt_twists()``                                    the synthetic sequence
=====================  =================================================  ==========================
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "HasConfigHints",
    "HasStampOrigin",
    "HasBodyFrame",
    "HasControls",
    "HasImu",
    "HasStereo",
    "HasFrameNs",
    "HasExactSdf",
    "HasGroundTruthTwists",
]


@runtime_checkable
class HasConfigHints(Protocol):
    """Parameter values this data needs, applied by the tools to the parameters the user did not
    set (e.g. no photometric term where colour and depth are not registered)."""

    #: parameter name -> value
    config_hints: Dict[str, Any]
    #: why, in one sentence (printed when the hints are applied)
    config_hints_reason: str


@runtime_checkable
class HasStampOrigin(Protocol):
    """Where the frame stamps come from."""

    #: True: the recording's own clock; False: made up from a frame rate (frame i at i / fps)
    has_timestamps: bool


@runtime_checkable
class HasBodyFrame(Protocol):
    """A body frame rigidly attached to the camera (EuRoC: the IMU frame of its ground truth)."""

    #: 4x4 camera (the frames' optical frame) -> body: ``T_w_B = T_w_c T_body_cam^-1``
    T_body_cam: np.ndarray

    def to_body(self, T_w_c: np.ndarray) -> np.ndarray:
        """Camera pose(s) (4x4 or Nx4x4) -> body pose(s), ``T_w_c T_body_cam^-1``."""
        ...


@runtime_checkable
class HasControls(Protocol):
    """A motion control between two frames (EuRoC: the IMU integrated over the interval)."""

    def control_between(self, i_prev: int, i: int, state) -> Optional[Any]:
        """The :class:`prism_ros.core.types.Control` from frame ``i_prev`` to ``i`` given the
        filter's :class:`~prism_ros.core.dynamics.MotionState` at ``i_prev``, or None (the
        constant-velocity model then predicts)."""
        ...

    def restart_controls(self) -> None:
        """Forget what the controls learnt in an earlier run (EuRoC: the IMU's gravity alignment and biases): a
        run over the same object starts as one over a freshly opened dataset."""
        ...


@runtime_checkable
class HasImu(Protocol):
    """The recording's IMU samples (each member may be None where the recording has none)."""

    #: :class:`prism_ros.core.imu.ImuData` (seconds, rad/s, m/s^2), or None
    imu: Optional[Any]
    #: (M,) int64 nanosecond stamps of the samples of ``imu`` (exact: the float seconds lose
    #: ~100 ns), or None where ``imu`` is None
    imu_ns: Optional[np.ndarray]
    #: :class:`prism_ros.core.imu.ImuNoise` (the recording's noise densities, defaults otherwise)
    imu_noise: Any
    #: 4x4 camera -> IMU frame, or None where ``imu`` is None
    T_imu_cam: Optional[np.ndarray]


@runtime_checkable
class HasStereo(Protocol):
    """Depth from a stereo pair."""

    #: the :class:`prism_ros.core.stereo.StereoRectifier` every frame goes through
    stereo: Any


@runtime_checkable
class HasFrameNs(Protocol):
    """Exact integer frame stamps."""

    #: (N,) int64 nanoseconds of the frames; ``stamps()`` is the same in float seconds
    frame_ns: np.ndarray


@runtime_checkable
class HasExactSdf(Protocol):
    """The scene's exact signed distance function (a simulated scene)."""

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """(N,) float64 signed distances (m, positive in free space) at (N,3) world points."""
        ...


@runtime_checkable
class HasGroundTruthTwists(Protocol):
    """Exact velocities at the frame times (an analytic trajectory)."""

    def gt_twists(self) -> np.ndarray:
        """(N,6) body-frame twists (vx vy vz wx wy wz; m/s, rad/s) at the N frame times."""
        ...
