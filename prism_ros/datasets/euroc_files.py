"""EuRoC / ASL file formats: ``imu0/data.csv``, Kalibr/ASL ``sensor.yaml`` and nanosecond stamps.

Parsing lives here, in the datasets layer; the core's IMU and stereo code takes the
parsed values (:class:`prism_ros.core.imu.ImuData`, :class:`prism_ros.core.stereo.CameraCalib`).
"""

from __future__ import annotations

import numpy as np

from prism_ros.core.imu import ImuData
from prism_ros.core.stereo import CameraCalib

from .textfile import data_lines

__all__ = [
    "read_euroc_imu_csv",
    "read_euroc_imu_csv_ns",
    "read_euroc_sensor_yaml",
    "read_ns_csv",
    "read_ns_csv_ns",
    "ns_to_s",
]


def read_ns_csv_ns(path, columns: int, what: str):
    """(ns (N,) int64, values (N, columns)) of an ASL csv: integer nanoseconds, then at least
    ``columns`` numbers per row (``what`` names them in the error); # lines are skipped."""
    rows = []
    ns = []
    for n, ln in data_lines(path):
        parts = ln.split(",")
        if len(parts) < columns + 1:
            raise ValueError(f"{path}:{n}: expected {columns + 1} columns ({what}): {ln!r}")
        ns.append(int(parts[0]))
        rows.append([float(x) for x in parts[1 : columns + 1]])
    return np.asarray(ns, dtype=np.int64), np.asarray(rows, dtype=np.float64).reshape(-1, columns)


def read_ns_csv(path, columns: int, what: str):
    """(t seconds (N,), values (N, columns)) of an ASL csv (:func:`read_ns_csv_ns` in seconds)."""
    ns, rows = read_ns_csv_ns(path, columns, what)
    return ns_to_s(ns), rows


def read_euroc_imu_csv_ns(path):
    """(:class:`ImuData`, its samples' integer nanosecond stamps (M,) int64) of a EuRoC
    ``imu0/data.csv``: ns, wx, wy, wz, ax, ay, az (header lines start with #).  ImuData keeps
    the samples in time order, one per stamp; so do the stamps."""
    ns, a = read_ns_csv_ns(path, 6, "ns, w_xyz, a_xyz")
    return ImuData(ns_to_s(ns), a[:, 0:3], a[:, 3:6]), np.unique(ns)


def read_euroc_imu_csv(path) -> ImuData:
    """EuRoC ``imu0/data.csv``: ns, wx, wy, wz, ax, ay, az (header lines start with #)."""
    return read_euroc_imu_csv_ns(path)[0]


def ns_to_s(ns) -> np.ndarray:
    """Integer nanoseconds -> float64 seconds (the conversion every EuRoC stamp goes through)."""
    ns = np.asarray(ns, dtype=np.int64)
    return (ns // 1_000_000_000).astype(np.float64) + (ns % 1_000_000_000).astype(np.float64) * 1e-9


def _load_yaml(path) -> dict:
    """YAML of an ASL/Kalibr sensor file (the OpenCV ``%YAML:1.0`` header is dropped)."""
    import yaml

    with open(path, "r", encoding="utf-8") as f:
        text = "".join(ln for ln in f if not ln.lstrip().startswith("%"))
    doc = yaml.safe_load(text) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return doc


def _matrix(doc: dict, key: str, path) -> np.ndarray:
    m = doc.get(key)
    if m is None:
        raise ValueError(f"{path}: missing '{key}'")
    if isinstance(m, dict):
        rows, cols = int(m.get("rows", 4)), int(m.get("cols", 4))
        return np.asarray(m["data"], dtype=np.float64).reshape(rows, cols)
    return np.asarray(m, dtype=np.float64).reshape(4, 4)


def read_euroc_sensor_yaml(path) -> dict:
    """An EuRoC/ASL ``sensor.yaml`` as a dict: camera ``{"type": "camera", "calib": CameraCalib, "rate_hz": ...}``,
    IMU ``{"type": "imu", "T_BS": 4x4, "rate_hz", "gyroscope_noise_density", ...}``.
    """
    doc = _load_yaml(path)
    kind = str(doc.get("sensor_type", "")).lower()
    T_BS = _matrix(doc, "T_BS", path) if "T_BS" in doc else np.eye(4)
    if kind == "camera" or "intrinsics" in doc:
        fu, fv, cu, cv = [float(x) for x in doc["intrinsics"]]
        model = str(doc.get("distortion_model", "radial-tangential")).lower()
        if model not in ("radial-tangential", "radtan", "plumb_bob", "none"):
            raise ValueError(f"{path}: distortion model '{model}' is not supported (radial-tangential only)")
        D = np.zeros(4) if model == "none" else np.asarray(doc.get("distortion_coefficients", [0, 0, 0, 0]), float)
        w, h = [int(x) for x in doc["resolution"]]
        K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
        return {"type": "camera", "calib": CameraCalib(K, D, (w, h), T_BS), "rate_hz": doc.get("rate_hz")}
    out = {"type": kind or "imu", "T_BS": T_BS}
    for k, v in doc.items():
        if k not in ("T_BS",):
            out.setdefault(k, v)
    return out
