"""config/prism.yaml, docs/parameters.md and prism_ros.config.PARAMS agree; bad values are refused by name;
descriptions are short enough for ``ros2 param describe``."""

import math
import re
from pathlib import Path

import pytest
import yaml

from prism_ros.config import PARAMS, ConfigError, PrismConfig, default_config_path, load_yaml_params

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT / "config" / "prism.yaml"


def test_default_config_path_is_the_repo_yaml():
    assert Path(default_config_path()).resolve() == YAML.resolve()


def test_yaml_has_ros_parameters_layout():
    doc = yaml.safe_load(YAML.read_text())
    assert list(doc) == ["/**"]
    assert list(doc["/**"]) == ["ros__parameters"]


def test_yaml_and_params_agree_in_keys_order_and_values():
    values = load_yaml_params(str(YAML))
    assert list(values) == [p.name for p in PARAMS], "config/prism.yaml keys/order differ from PARAMS"
    for p in PARAMS:
        v = values[p.name]
        if isinstance(p.default, float):
            assert isinstance(v, (int, float)) and not isinstance(v, bool), p.name
            assert math.isclose(v, p.default, rel_tol=1e-12, abs_tol=0), p.name
        else:
            assert type(v) is type(p.default), p.name
            assert v == p.default, p.name


def test_names_are_unique_and_carry_units():
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names))
    for p in PARAMS:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", p.name), p.name


def test_every_param_documented_with_range_or_choices():
    for p in PARAMS:
        assert len(p.description) > 10, p.name
        assert p.scope in ("core", "pipeline", "node"), p.name
        assert not p.runtime or p.scope == "node", p.name  # the filter's parameters are baked in
        if p.kind in (int, float):
            assert p.lo is not None and p.hi is not None and p.lo <= p.default <= p.hi, p.name
        if p.choices:
            assert p.default in p.choices, p.name
        if p.kind is list:
            assert p.length == len(p.default), p.name


def test_the_filter_config_holds_exactly_the_core_parameters():
    from prism_ros.core.config import FILTER_PARAMS, FilterConfig

    assert [p.name for p in PARAMS if p.scope == "core"] == [p.name for p in FILTER_PARAMS]
    cfg = PrismConfig.from_dict({"voxel_size_m": 0.01, "queue_size": 5, "control_mode": "imu"})
    fc = cfg.filter_config()
    assert isinstance(fc, FilterConfig) and fc.voxel_size_m == 0.01
    assert not hasattr(fc, "queue_size") and not hasattr(fc, "control_mode")
    with pytest.raises(ConfigError, match="unknown parameter"):
        FilterConfig.from_dict({"queue_size": 5})  # the node's parameters are not the core's
    with pytest.raises(ConfigError, match="out of range"):
        PrismConfig.from_dict({"recovery_distance_factors": [8.0, 0.5]})  # every element is checked


def test_defaults_validate():
    cfg = PrismConfig.from_yaml()
    assert cfg.to_dict() == PrismConfig.from_dict({}).to_dict()


def _bad_value(p):
    if p.kind is bool:
        return "yes"
    if p.kind in (int, float):
        return p.hi * 10 + 1 if p.hi is not None and p.hi > 0 else -1e9
    if p.choices:
        return "not-a-choice"
    if p.kind is list:
        return [1.0] * (p.length + 1)
    return 123  # a number where a string is expected


@pytest.mark.parametrize("p", PARAMS, ids=[p.name for p in PARAMS])
def test_bad_value_raises_config_error_naming_the_param(p):
    with pytest.raises(ConfigError) as e:
        PrismConfig.from_dict({p.name: _bad_value(p)})
    assert p.name in str(e.value)


def test_nan_and_unknown_and_relations():
    with pytest.raises(ConfigError, match="voxel_size_m"):
        PrismConfig.from_dict({"voxel_size_m": float("nan")})
    with pytest.raises(ConfigError, match="no_such_param"):
        PrismConfig.from_dict({"no_such_param": 1})
    with pytest.raises(ConfigError, match="depth_min_m"):
        PrismConfig.from_dict({"depth_min_m": 3.0, "depth_max_m": 2.0})
    with pytest.raises(ConfigError, match="truncation_m"):
        PrismConfig.from_dict({"voxel_size_m": 0.05, "truncation_m": 0.08})
    with pytest.raises(ConfigError, match="backend_loop_kernel_scale"):
        PrismConfig.from_dict({"backend_loop_kernel_scale": 2.0, "backend_loop_gate_mahalanobis2": 22.46})
    with pytest.raises(ConfigError, match="map_frame"):
        PrismConfig.from_dict({"backend_enabled": True, "map_frame": "odom"})
    assert PrismConfig.from_dict({"world_frame": "map"}).world_frame == "map"  # without the back end, no map frame


def test_overrides_and_replace(tmp_path):
    cfg = PrismConfig.from_yaml(None, {"voxel_size_m": 0.01, "truncation_m": 0.04})
    assert cfg.voxel_size_m == 0.01
    assert cfg.replace(huber_k=2.0).huber_k == 2.0
    p = tmp_path / "flat.yaml"
    p.write_text("voxel_size_m: 0.03\ntruncation_m: 0.12\n")
    assert PrismConfig.from_yaml(str(p)).voxel_size_m == 0.03
    p.write_text("prism_node:\n  ros__parameters:\n    voxel_size_m: 0.03\n    truncation_m: 0.12\n")
    assert PrismConfig.from_yaml(str(p)).truncation_m == 0.12


PARAMS_DOC = ROOT / "docs" / "parameters.md"
REGENERATE = "python -m prism_ros.tools.params_table --write"


def test_parameter_doc_lists_every_param():
    doc = PARAMS_DOC.read_text()
    missing = [p.name for p in PARAMS if f"`{p.name}`" not in doc]
    assert not missing, f"docs/parameters.md does not list: {missing} (run: {REGENERATE})"


def test_parameter_doc_table_is_current():
    from prism_ros.tools.params_table import BEGIN, END, table

    doc = PARAMS_DOC.read_text()
    block = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == table().strip(), f"docs/parameters.md is stale: {REGENERATE}"


def test_readme_links_to_the_parameter_doc():
    readme = (ROOT / "README.md").read_text()
    assert "](docs/parameters.md)" in readme, "README.md must link to docs/parameters.md"


#: ``ros2 param describe`` prints the description: what the parameter does, its unit, at most a short provenance
MAX_DESCRIPTION = 200


@pytest.mark.parametrize("p", PARAMS, ids=[p.name for p in PARAMS])
def test_description_is_short_and_names_no_work_item(p):
    d = p.description
    where = "measurements go to docs/design.md or docs/results*.md"
    assert len(d) <= MAX_DESCRIPTION, f"{p.name}: {len(d)} characters ({where})"
    assert not re.search(r"\b(issue|stop|round)\s*#?\s*\d", d, re.I), f"{p.name}: names an issue/stop/round: {d}"
    assert "README" not in d, f"{p.name}: point to docs/, not to README sections: {d}"


def test_yaml_file_is_the_generated_one():
    from prism_ros.tools.params_table import config_yaml

    assert YAML.read_text() == config_yaml(), f"config/prism.yaml differs from PARAMS: {REGENERATE}"


@pytest.mark.parametrize("v", [1e-05, 1e20, 0.5, -3e-7, 2.0, 1.345, 4000000, True, 'a"b', [0.0, -90.0, 1e-9]])
def test_generated_yaml_literals_read_back_with_their_type(v):
    from prism_ros.tools.params_table import yaml_scalar

    back = yaml.safe_load(f"x: {yaml_scalar(v)}")["x"]
    assert back == v and type(back) is type(v)
