"""Crash-safe map persistence: atomic writes, versioned maps, compatibility checks (no ROS).

* :func:`atomic_write`: a crash or ``kill -9`` during a save leaves the previous file or the new one.
* :func:`save_map` / :func:`load_map`: a :class:`~prism_ros.core.tsdf.TsdfMap` with a versioned header
  (format, version, voxel size, truncation, frames, the configuration); a map whose voxel size or
  truncation differ from the running configuration is refused (:class:`MapCompatibilityError`).
* :func:`safe_map_path`: a map file name inside a directory, refusing anything that leaves it.
* :func:`install_map`: make a :class:`~prism_ros.core.filter.PrismFilter` relocalise in a loaded map.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

__all__ = [
    "MapCompatibilityError",
    "MapPathError",
    "atomic_write",
    "safe_map_path",
    "save_map",
    "load_map",
    "check_compatible",
    "install_map",
]


class MapCompatibilityError(ValueError):
    """A map file cannot be used with the running configuration (or is not a prism map)."""


class MapPathError(ValueError):
    """A map file name that would resolve outside the configured directory."""


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[str], Any]) -> str:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then make it ``path``: flushed, fsync'ed,
    ``os.replace``'d, the directory fsync'ed.  On any error the temporary is removed and ``path`` left as it was.
    Returns ``path``.
    """
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(d)
    return path


def safe_map_path(directory: str, name: str) -> str:
    """``directory/name`` after checking ``name`` is a plain file name that stays inside
    ``directory`` (also through symlinks).  Adds ``.npz`` when missing.  Raises MapPathError."""
    if not isinstance(name, str) or not name.strip():
        raise MapPathError("map file name is empty")
    if "\x00" in name:
        raise MapPathError("map file name contains a NUL byte")
    if os.path.isabs(name) or "/" in name or (os.altsep and os.altsep in name) or os.sep in name:
        raise MapPathError(f"map file name {name!r} must be a plain file name inside save_map_dir (no directories)")
    if name in (".", "..") or name.startswith(".."):
        raise MapPathError(f"map file name {name!r} would leave save_map_dir")
    if not name.endswith(".npz"):
        name += ".npz"
    root = os.path.realpath(os.path.abspath(os.path.expanduser(directory)))
    target = os.path.realpath(os.path.join(root, name))
    if os.path.dirname(target) != root:
        raise MapPathError(f"map file {name!r} resolves to {target}, outside save_map_dir {root}")
    return target


def _json_safe(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def save_map(tsdf_map, path: str, config=None, extra: Optional[Dict[str, Any]] = None) -> str:
    """Atomically save ``tsdf_map`` to ``path``; the header gains ``config`` (the
    PrismConfig as a dict), ``saved_unix_s`` and ``extra``.  Returns the path."""
    hdr: Dict[str, Any] = {"saved_unix_s": time.time()}
    if config is not None:
        d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        hdr["config"] = {k: _json_safe(v) for k, v in d.items()}
    hdr.update(extra or {})
    return atomic_write(path, lambda tmp: tsdf_map.save(tmp, extra=hdr))


def check_compatible(header: Dict[str, Any], config, path: str = "map") -> None:
    """Raise MapCompatibilityError unless ``header`` (TsdfMap.read_header) matches ``config``."""
    from prism_ros.core.tsdf import MAP_FORMAT_VERSION

    if header.get("format") != "prism_ros.tsdf":
        raise MapCompatibilityError(f"{path}: not a prism_ros map (format {header.get('format')!r})")
    if header.get("version") != MAP_FORMAT_VERSION:
        raise MapCompatibilityError(
            f"{path}: map format version {header.get('version')} is not supported (this build reads version "
            f"{MAP_FORMAT_VERSION})"
        )
    if config is None:
        return
    problems = []
    for key, want in (("voxel_size_m", config.voxel_size_m), ("truncation_m", config.truncation_m)):
        got = header.get(key)
        if got is None or not math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9):
            problems.append(f"{key} {got} in the map but {want} in the configuration")
    if problems:
        raise MapCompatibilityError(
            f"{path}: incompatible map: "
            + "; ".join(problems)
            + " (set these parameters to the map's values, or build a new map)"
        )


def load_map(path: str, config=None):
    """Load a TsdfMap saved by :func:`save_map` (or ``TsdfMap.save``), checking it
    against ``config`` (a PrismConfig; None: no check).  Map noise parameters are
    taken from ``config``.  Raises MapCompatibilityError, FileNotFoundError."""
    from prism_ros.core.tsdf import TsdfMap

    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"map file {path} does not exist")
    try:
        hdr = TsdfMap.read_header(path)
    except Exception as e:  # truncated / not an npz / no header
        raise MapCompatibilityError(f"{path}: not a readable prism_ros map ({type(e).__name__}: {e})") from None
    check_compatible(hdr, config, path)
    kw = {}
    if config is not None:
        kw = dict(
            prior_sigma_m=config.map_prior_sigma_m,
            min_sigma_m=config.map_min_sigma_m,
            max_observations=config.map_max_observations,
            model_sigma_m=config.map_model_sigma_m,
            distance_sigma_ratio=config.map_distance_sigma_ratio,
        )
    return TsdfMap.load(path, **kw)


def install_map(prism_filter, tsdf_map, T_w_c0: Optional[np.ndarray] = None) -> None:
    """Make ``prism_filter`` track against ``tsdf_map``: the state is reset and the next
    frame is relocalised in the map from ``T_w_c0`` (a prior in the map's world frame)
    before it is fused (:meth:`PrismFilter.set_map`)."""
    prism_filter.set_map(tsdf_map, T_w_c0)
