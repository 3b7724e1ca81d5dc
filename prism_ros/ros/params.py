"""The node's ROS parameters: declared from :data:`prism_ros.config.PARAMS`, nothing else.

Each :class:`~prism_ros.config.ParamSpec` becomes one declared parameter with its description, range and read-only flag
(``ParamSpec.runtime``), so ``ros2 param describe`` shows exactly the table that ``config/prism.yaml`` and the offline
CLI use. :func:`yaml_disagreements` says where a params file and the table differ (the test of the shipped YAML uses
it).  A change while the node runs goes through :func:`updated_config`: read-only parameters and invalid values are
refused with the reason, and the result is a complete, validated :class:`~prism_ros.config.PrismConfig`.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterable, List, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from prism_ros.config import PARAMS, ConfigError, ParamSpec, PrismConfig
from prism_ros.core import persistence

__all__ = [
    "declared_descriptor",
    "declare_all",
    "read_config",
    "updated_config",
    "check_map_params",
    "save_map_path",
    "yaml_disagreements",
]

_PARAM_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_DOUBLE_ARRAY,
}
_BY_NAME = {p.name: p for p in PARAMS}


def declared_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor the node declares for ``spec`` (description, range, read-only)."""
    d = ParameterDescriptor()
    d.name = spec.name
    d.type = _PARAM_TYPES[spec.kind]
    rng = spec.range_text()
    d.description = spec.description + (f" Range: {rng}." if rng else "")
    d.additional_constraints = rng
    d.read_only = not spec.runtime
    if spec.kind is float and spec.lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)]
    elif spec.kind is int and spec.lo is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d


def _plain(spec: ParamSpec, value: Any) -> Any:
    """A parameter value as PrismConfig takes it (ROS gives arrays as array.array / tuples)."""
    return [float(x) for x in value] if spec.kind is list else value


def declare_all(node) -> PrismConfig:
    """Declare every parameter on ``node``; the validated configuration it starts with
    (ConfigError: a value out of range, a relation broken, a map path refused)."""
    for spec in PARAMS:
        node.declare_parameter(spec.name, _plain(spec, spec.default), declared_descriptor(spec))
    return read_config(node)


def read_config(node) -> PrismConfig:
    cfg = PrismConfig.from_dict({s.name: _plain(s, node.get_parameter(s.name).value) for s in PARAMS})
    check_map_params(cfg)
    return cfg


def updated_config(cfg: PrismConfig, changes: Iterable[Tuple[str, Any]]) -> PrismConfig:
    """``cfg`` with ``changes`` (name, value) applied, validated; parameters outside the
    table (rclpy's own, such as use_sim_time) are ignored.  ConfigError names the
    parameter and the reason: read-only, out of range, or a refused map path."""
    values = cfg.to_dict()
    for name, value in changes:
        spec = _BY_NAME.get(name)
        if spec is None:
            continue
        if not spec.runtime:
            raise ConfigError(f"parameter '{name}' is read-only while the node runs (restart the node to change it)")
        values[name] = _plain(spec, value)
    new = PrismConfig.from_dict(values)
    check_map_params(new)
    return new


def check_map_params(cfg: PrismConfig) -> None:
    """save_map_name must stay inside save_map_dir; load_map_path must be a compatible map."""
    if cfg.save_map_name:
        try:
            persistence.safe_map_path(cfg.save_map_dir, cfg.save_map_name)
        except persistence.MapPathError as e:
            raise ConfigError(f"parameter 'save_map_name' refused: {e}") from None
    if cfg.load_map_path:
        from prism_ros.core.tsdf import TsdfMap

        path = os.path.abspath(os.path.expanduser(cfg.load_map_path))
        if not os.path.isfile(path):
            raise ConfigError(f"parameter 'load_map_path': {path} does not exist")
        try:
            hdr = TsdfMap.read_header(path)
        except Exception as e:
            raise ConfigError(f"parameter 'load_map_path': {path} is not a readable prism_ros map ({e})") from None
        try:
            persistence.check_compatible(hdr, cfg, path)
        except persistence.MapCompatibilityError as e:
            raise ConfigError(f"parameter 'load_map_path' refused: {e}") from None


def save_map_path(cfg: PrismConfig, stamp: float) -> str:
    """Where ~/save_map writes now: ``save_map_name`` (empty: a dated name with the last
    frame's ``stamp``) in ``save_map_dir``, which is created.  Re-checked at every save:
    symlinks may have changed since the name was set (MapPathError)."""
    d = os.path.realpath(os.path.abspath(os.path.expanduser(cfg.save_map_dir)))
    os.makedirs(d, exist_ok=True)
    name = cfg.save_map_name or (time.strftime("prism_map_%Y%m%d-%H%M%S") + f"_t{stamp:.3f}.npz")
    return persistence.safe_map_path(d, name)


def yaml_disagreements(values: Dict[str, Any]) -> List[str]:
    """How a params file's ``values`` (:func:`prism_ros.config.load_yaml_params`) differ
    from the table's defaults: missing, unknown, another type or another value."""
    out = [f"{n}: missing" for n in _BY_NAME if n not in values]
    out += [f"{n}: not a declared parameter" for n in values if n not in _BY_NAME]
    for name, v in values.items():
        spec = _BY_NAME.get(name)
        if spec is None:
            continue
        if spec.kind is list:
            if not isinstance(v, list) or [float(x) for x in v] != [float(x) for x in spec.default]:
                out.append(f"{name}: {v!r} in the file, {spec.default!r} declared")
        elif type(v) is not type(spec.default) or v != spec.default:
            out.append(
                f"{name}: {v!r} ({type(v).__name__}) in the file, {spec.default!r} "
                f"({type(spec.default).__name__}) declared"
            )
    return out
