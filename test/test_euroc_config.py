"""config/euroc.yaml, the EuRoC overlay on config/prism.yaml (launch/euroc.launch.py): declared
parameters with valid values, only what differs, the filter settings = the offline runner's
EuRoC hints plus the stereo depth noise model, the camera extrinsic = the EuRoC calibration's
rectified left camera."""

import ast
import glob
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from prism_ros.config import PARAMS, PrismConfig, load_yaml_params

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT / "config" / "euroc.yaml"
SPECS = {p.name: p for p in PARAMS}
#: stated although they are prism.yaml's defaults: the IMU is the body frame
STATED_DEFAULTS = {"T_base_imu_xyz_m", "T_base_imu_rpy_deg"}


def _euroc():
    return load_yaml_params(str(YAML))


def test_layout_and_every_key_is_a_declared_parameter_with_a_valid_value():
    doc = yaml.safe_load(YAML.read_text())
    assert list(doc) == ["/**"] and list(doc["/**"]) == ["ros__parameters"]
    values = _euroc()
    unknown = [k for k in values if k not in SPECS]
    assert not unknown, f"config/euroc.yaml: not declared in prism_ros/config.py: {unknown}"
    for k, v in values.items():
        d = SPECS[k].default
        if isinstance(d, float):  # a ROS double parameter must be written as a float literal
            assert isinstance(v, float), k
        elif isinstance(d, list):
            assert all(isinstance(x, float) for x in v), k
        else:
            assert type(v) is type(d), k
    # as the node sees it: prism.yaml, then this overlay (the node validates the whole set)
    merged = {**load_yaml_params(str(ROOT / "config" / "prism.yaml")), **values}
    cfg = PrismConfig.from_dict(merged)
    assert cfg.control_mode == "imu" and cfg.sensor_qos == "reliable"


#: filter parameters the node needs beyond the hints: the stereo depth noise model (the offline
#: runner passes the per-pixel stereo sigma instead; the node receives depth images only)
NODE_ONLY_FILTER = {"depth_noise_c0_m", "depth_noise_c2_per_m", "depth_noise_z0_m"}


def test_the_filter_settings_are_the_offline_runners_euroc_hints():
    """``prism-ros run`` on a EuRoC folder applies EurocDataset.config_hints; the node gets the
    same filter from config/euroc.yaml (change the hints, then this yaml)."""
    from prism_ros.datasets import EurocDataset

    values = _euroc()
    core = {k: v for k, v in values.items() if SPECS[k].scope == "core" and k not in NODE_ONLY_FILTER}
    hints = EurocDataset.config_hints
    assert set(core) == set(hints), "config/euroc.yaml's filter block must hold exactly EurocDataset.config_hints"
    for k, v in hints.items():
        assert math.isclose(core[k], v, rel_tol=1e-12), (k, core[k], v)


def test_the_depth_noise_is_the_players_stereo_sigma(data_dir):
    """sigma_z(z) = c0 + c2 (z - z0)^2 with c0 = z0 = 0 and c2 = sigma_d / (f b): the sigma the
    EuRoC reader (and so the offline runner) gives every stereo pixel, z^2 sigma_d / (f b)."""
    from prism_ros.core.stereo import StereoRectifier
    from prism_ros.datasets.euroc import stereo_sigma_d
    from prism_ros.datasets.euroc_files import read_euroc_sensor_yaml

    values = _euroc()
    assert set(values) >= NODE_ONLY_FILTER
    assert values["depth_noise_c0_m"] == 0.0 and values["depth_noise_z0_m"] == 0.0
    mav0 = data_dir / "euroc_V1_02_medium_imu_gt" / "mav0"
    if not (mav0 / "cam0" / "sensor.yaml").is_file():
        pytest.skip(f"EuRoC calibration absent at {mav0}")
    c0, c1 = (read_euroc_sensor_yaml(mav0 / c / "sensor.yaml")["calib"] for c in ("cam0", "cam1"))
    st = StereoRectifier(c0, c1, sigma_d=stereo_sigma_d(2), downscale=2)  # the player's (the default)
    c2 = st.sigma_d / (st.f * st.baseline)
    assert math.isclose(values["depth_noise_c2_per_m"], c2, rel_tol=0.01), c2


def test_only_what_differs_from_prism_yaml():
    base = load_yaml_params(str(ROOT / "config" / "prism.yaml"))
    from prism_ros.datasets import EurocDataset

    same = [
        k
        for k, v in _euroc().items()
        if v == base[k] and k not in STATED_DEFAULTS and k not in EurocDataset.config_hints
    ]
    assert not same, f"config/euroc.yaml repeats prism.yaml's values: {same}"


def test_the_extrinsics_are_the_euroc_calibration(data_dir):
    """T_base_camera = the rectified left camera in the body frame, from cam0/cam1 sensor.yaml (what
    the player publishes; prism_ros.ros.player.euroc_node_params); T_base_imu = imu0's T_BS = I;
    prism.yaml's IMU noise densities are imu0/sensor.yaml's."""
    from prism_ros.core.imu import ImuNoise
    from prism_ros.core.stereo import StereoRectifier
    from prism_ros.datasets.euroc_files import read_euroc_sensor_yaml
    from prism_ros.ros.conversions import T_from_xyz_rpy_deg
    from prism_ros.ros.player import _xyz_rpy

    mav0 = data_dir / "euroc_V1_02_medium_imu_gt" / "mav0"
    if not (mav0 / "cam0" / "sensor.yaml").is_file():
        pytest.skip(f"EuRoC calibration absent at {mav0}")
    c0, c1 = (read_euroc_sensor_yaml(mav0 / c / "sensor.yaml")["calib"] for c in ("cam0", "cam1"))
    T_B_rect = StereoRectifier(c0, c1).T_B_rect
    cfg = PrismConfig.from_dict({**load_yaml_params(str(ROOT / "config" / "prism.yaml")), **_euroc()})
    xyz, rpy = _xyz_rpy(T_B_rect)
    np.testing.assert_allclose(cfg.T_base_camera_xyz_m, xyz, atol=1e-6)
    np.testing.assert_allclose(cfg.T_base_camera_rpy_deg, rpy, atol=1e-4)
    T = T_from_xyz_rpy_deg(cfg.T_base_camera_xyz_m, cfg.T_base_camera_rpy_deg)
    np.testing.assert_allclose(T, T_B_rect, atol=1e-5)
    imu = read_euroc_sensor_yaml(mav0 / "imu0" / "sensor.yaml")
    np.testing.assert_allclose(imu["T_BS"], np.eye(4), atol=1e-12)  # the body frame is the IMU's
    np.testing.assert_allclose(
        T_from_xyz_rpy_deg(cfg.T_base_imu_xyz_m, cfg.T_base_imu_rpy_deg), imu["T_BS"], atol=1e-12
    )
    n = ImuNoise.from_sensor_yaml(imu)
    for name, v in (
        ("imu_gyro_noise_density", n.gyro_noise_density),
        ("imu_gyro_random_walk", n.gyro_random_walk),
        ("imu_accel_noise_density", n.accel_noise_density),
        ("imu_accel_random_walk", n.accel_random_walk),
    ):
        assert math.isclose(getattr(cfg, name), v, rel_tol=1e-9), name


def test_setup_installs_the_euroc_files():
    """setup.py's data_files globs (share/prism_ros/config, share/prism_ros/launch) take them."""
    src = (ROOT / "setup.py").read_text()
    patterns = [
        ast.literal_eval(n.args[0])
        for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_files"
    ]
    found = {str(Path(f)) for p in patterns for f in glob.glob(str(ROOT / p))}
    assert str(YAML) in found and str(ROOT / "launch" / "euroc.launch.py") in found, patterns
