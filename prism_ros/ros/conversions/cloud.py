"""sensor_msgs/PointCloud2 of the map (``~/map_cloud``) and a reader for any cloud.

The map cloud is unordered (height 1), little endian, 24-byte points with the float32 fields
``x y z rgb sigma weight`` (:data:`prism_ros.core.cloud_kernels.CLOUD_FIELDS`; ``rgb`` is the
PCL / RViz packing).  Colours and point rows come from :mod:`prism_ros.core.cloud_kernels`.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from prism_ros.core.cloud_kernels import CLOUD_FIELDS, map_colors, pack_cloud_points, sigma_colormap
from prism_ros.ros.conversions.common import big_message, set_data

__all__ = ["make_map_cloud", "surface_cloud", "read_cloud", "warm_up_kernels"]


def make_map_cloud(
    header: Header,
    xyz: np.ndarray,
    rgb: np.ndarray,
    sigma: np.ndarray,
    weight: np.ndarray,
) -> PointCloud2:
    """PointCloud2 with float32 fields ``x y z rgb sigma weight`` (24-byte points, unordered);
    ``is_dense`` when every xyz is finite.  Arguments: :func:`~prism_ros.core.cloud_kernels.pack_cloud_points`."""
    pts, finite = pack_cloud_points(xyz, rgb, sigma, weight)
    msg = big_message(PointCloud2)
    msg.header = header
    msg.height = 1
    msg.width = int(pts.shape[0])
    msg.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate(CLOUD_FIELDS)
    ]
    msg.is_bigendian = False
    msg.point_step = 4 * len(CLOUD_FIELDS)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(finite)
    set_data(msg, pts)
    return msg


def surface_cloud(
    header: Header, surface: Dict[str, np.ndarray], color_mode: str, min_sigma_m: float, truncation_m: float
) -> PointCloud2:
    """The map's surface voxels (``TsdfMap.extract_surface``) as ~/map_cloud, coloured by
    :func:`~prism_ros.core.cloud_kernels.map_colors`."""
    rgb = map_colors(surface["rgb"], surface["sigma"], color_mode, min_sigma_m, truncation_m)
    return make_map_cloud(header, surface["xyz"], rgb, surface["sigma"], surface["count"])


def warm_up_kernels() -> None:
    """Compile (or load from the cache) the Numba kernels of the map outputs (colours, cloud
    packing), so that the first ~/map_cloud or ~/mesh does not hold the filter thread."""
    sigma_colormap(np.ones(1, np.float64), 1e-3, 1e-2)  # (the mesh's sigma)
    make_map_cloud(
        Header(),
        np.zeros((1, 3), np.float32),
        sigma_colormap(np.ones(1, np.float32), 1e-3, 1e-2),
        np.ones(1, np.float32),
        np.ones(1, np.float32),
    )


_PF_DTYPES = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}


def read_cloud(msg: PointCloud2) -> Dict[str, np.ndarray]:
    """PointCloud2 -> {field name: (N,) array} (any layout; used by tests and tools)."""
    endian = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        names.append(f.name)
        base = endian + _PF_DTYPES[f.datatype]
        formats.append((base, (f.count,)) if f.count > 1 else base)
        offsets.append(f.offset)
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    n = int(msg.width) * int(msg.height)
    raw = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if msg.height > 1 and msg.row_step != msg.point_step * msg.width:
        raw = raw.reshape(msg.height, msg.row_step)[:, : msg.point_step * msg.width].reshape(-1)
    arr = np.frombuffer(np.ascontiguousarray(raw[: n * msg.point_step]).tobytes(), dtype=dt, count=n)
    return {name: np.array(arr[name]) for name in names}
