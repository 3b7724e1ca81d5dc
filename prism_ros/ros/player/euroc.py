"""The node parameters that match a played EuRoC recording.

:func:`euroc_node_params` place the rectified left camera in the body (IMU) frame (``T_base_camera_*``,
``T_base_imu_*`` = imu0's T_BS) and set the node's depth model sigma_z = c0 + c2 (z - z0)^2 with
c0 = z0 = 0, c2 = sigma_d / (f b): exactly the reader's per-pixel z^2 sigma_d / (f b) (the player
publishes no sigma image).  The player prints them with ``control_mode:=imu`` (:func:`euroc_node_hint`).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from prism_ros.datasets.capabilities import HasImu, HasStereo

__all__ = ["euroc_node_params", "euroc_node_hint"]


def _xyz_rpy(T: np.ndarray) -> Tuple[List[float], List[float]]:
    """Inverse of conversions.T_from_xyz_rpy_deg: (xyz, fixed-axis roll pitch yaw in degrees)."""
    from scipy.spatial.transform import Rotation

    rpy = Rotation.from_matrix(np.asarray(T, float)[:3, :3]).as_euler("xyz", degrees=True)
    return [round(float(x), 6) + 0.0 for x in T[:3, 3]], [round(float(x), 4) + 0.0 for x in rpy]


def euroc_node_params(ds) -> Dict[str, List[float]]:
    """Node parameters matching a played EuRoC recording (module docstring): the depth noise
    model (with stereo), ``T_base_camera_*`` (``ds.T_body_cam``), ``T_base_imu_*`` (with an
    IMU) and the IMU noise densities."""
    from prism_ros.core import se3

    out: Dict[str, List[float]] = {}
    if isinstance(ds, HasStereo):
        st = ds.stereo
        out["depth_noise_c0_m"] = 0.0
        out["depth_noise_c2_per_m"] = float(st.sigma_d / (st.f * st.baseline))
        out["depth_noise_z0_m"] = 0.0
    out["T_base_camera_xyz_m"], out["T_base_camera_rpy_deg"] = _xyz_rpy(ds.T_body_cam)
    imu = ds if isinstance(ds, HasImu) else None
    if imu is not None and imu.T_imu_cam is not None:  # T_B_I = T_B_cam T_I_cam^-1
        out["T_base_imu_xyz_m"], out["T_base_imu_rpy_deg"] = _xyz_rpy(ds.T_body_cam @ se3.inv(imu.T_imu_cam))
    if imu is not None and imu.imu_noise is not None:
        noise = imu.imu_noise
        out["imu_gyro_noise_density"] = noise.gyro_noise_density
        out["imu_gyro_random_walk"] = noise.gyro_random_walk
        out["imu_accel_noise_density"] = noise.accel_noise_density
        out["imu_accel_random_walk"] = noise.accel_random_walk
    return out


def _param_float(v: float) -> str:
    """A double parameter on the command line: always with a '.' or an exponent (``0``
    would be an integer, which a double parameter refuses)."""
    t = f"{float(v):.6g}"
    return t if any(c in t for c in ".en") else t + ".0"


def euroc_node_hint(ds) -> str:
    """The lines the player prints for a EuRoC recording: how to run the node on it."""
    p = euroc_node_params(ds)
    args = " ".join(f'-p {k}:="{v}"' if isinstance(v, list) else f"-p {k}:={_param_float(v)}" for k, v in p.items())
    return (
        "prism-ros play: EuRoC: the rectified left camera in the body (IMU) frame; run the node with\n"
        f"  --ros-args -p use_sim_time:=true -p control_mode:=imu {args}"
    )
