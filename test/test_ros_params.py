"""Parameter declarations of the prism node: every PARAMS entry with description and
range, YAML and declarations agree, invalid values are refused with a reason."""

import pytest

pytest.importorskip("rclpy")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from prism_ros.config import PARAMS, ConfigError, default_config_path, load_yaml_params  # noqa: E402
from prism_ros.ros.node import PrismNode  # noqa: E402
from prism_ros.ros.params import yaml_disagreements  # noqa: E402
from prism_ros.ros.env import claim_domain_id  # noqa: E402
from ros_harness import FakeFilter, RosHarness  # noqa: E402

pytestmark = [pytest.mark.ros]

DOMAIN_ID = claim_domain_id(42)  # exclusive on this machine while the tests run


@pytest.fixture(scope="module")
def ros():
    h = RosHarness(DOMAIN_ID)
    yield h
    h.shutdown()


@pytest.fixture
def node(ros):
    n = PrismNode(context=ros.context, filter_factory=FakeFilter, warmup=False)
    yield n
    n.destroy_node()


def test_every_param_declared_with_description_and_range(node):
    declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}
    assert declared == {p.name for p in PARAMS}
    for spec in PARAMS:
        d = node.describe_parameter(spec.name)
        assert d.description.startswith(spec.description), spec.name
        want_type = {
            bool: ParameterType.PARAMETER_BOOL,
            int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE,
            str: ParameterType.PARAMETER_STRING,
            list: ParameterType.PARAMETER_DOUBLE_ARRAY,
        }[spec.kind]
        assert d.type == want_type, spec.name
        if spec.kind is float and spec.lo is not None:
            assert len(d.floating_point_range) == 1, spec.name
            r = d.floating_point_range[0]
            assert (r.from_value, r.to_value) == (float(spec.lo), float(spec.hi)), spec.name
        if spec.kind is int and spec.lo is not None:
            r = d.integer_range[0]
            assert (r.from_value, r.to_value) == (int(spec.lo), int(spec.hi)), spec.name
        if spec.choices:
            for c in spec.choices:
                assert c in d.additional_constraints, spec.name
        # every numeric parameter has a range
        if spec.kind in (int, float):
            assert spec.lo is not None, f"{spec.name} has no range"
        assert d.read_only == (not spec.runtime), spec.name
        # the node's value is the documented default
        v = node.get_parameter(spec.name).value
        assert (list(v) if spec.kind is list else v) == spec.default, spec.name


def test_yaml_and_declarations_agree(ros):
    path = default_config_path()
    yaml_values = load_yaml_params(path)
    assert yaml_disagreements(yaml_values) == []  # same names, types and values as the table
    # the node started with the params file gets exactly those values
    n = PrismNode(
        context=ros.context,
        filter_factory=FakeFilter,
        warmup=False,
        cli_args=["--ros-args", "--params-file", path],
    )
    try:
        for spec in PARAMS:
            v = n.get_parameter(spec.name).value
            v = list(v) if spec.kind is list else v
            assert v == yaml_values[spec.name], spec.name
    finally:
        n.destroy_node()


def test_yaml_disagreements_named():
    values = load_yaml_params(default_config_path())
    values.pop("voxel_size_m")
    values["queue_size"] = 2.0  # right value, wrong type
    values["sync_slop_s"] = 0.05
    values["T_base_camera_xyz_m"] = [0.0, 0.0, 0.1]
    values["no_such_param"] = 1
    got = yaml_disagreements(values)
    assert sorted(g.split(":")[0] for g in got) == sorted(
        ["voxel_size_m", "no_such_param", "sync_slop_s", "queue_size", "T_base_camera_xyz_m"]
    ), got
    assert "voxel_size_m: missing" in got and "no_such_param: not a declared parameter" in got
    assert any(g.startswith("queue_size: 2.0 (float) in the file, 2 (int) declared") for g in got), got


def _set(node, name, value):
    return node.set_parameters([Parameter(name, value=value)])[0]


def test_invalid_runtime_values_refused_with_reason(node):
    r = _set(node, "sync_slop_s", 5.0)  # range [0, 1]
    assert not r.successful and r.reason
    assert node.get_parameter("sync_slop_s").value == 0.02
    r = _set(node, "cloud_color_mode", "viridis")
    assert not r.successful and "cloud_color_mode" in r.reason and "sigma" in r.reason and "rgb" in r.reason
    assert node.get_parameter("cloud_color_mode").value == "sigma"
    r = _set(node, "queue_size", 0)
    assert not r.successful
    r = _set(node, "voxel_size_m", 0.05)  # core parameter: read-only
    assert not r.successful and "read-only" in r.reason.lower().replace("read only", "read-only")
    assert node.get_parameter("voxel_size_m").value == 0.02
    r = _set(node, "map_publish_rate_hz", "fast")  # wrong type
    assert not r.successful


def test_valid_runtime_values_applied(node):
    assert _set(node, "sync_slop_s", 0.05).successful
    assert node._rgbd.pairer.slop_s == 0.05 and node.cfg.sync_slop_s == 0.05
    periods = lambda: sorted(t.timer_period_ns for t in node._timers)  # noqa: E731
    assert (
        _set(node, "occupancy_publish_rate_hz", 0.0).successful and _set(node, "mesh_publish_rate_hz", 0.0).successful
    )
    assert _set(node, "map_publish_rate_hz", 4.0).successful
    assert len(periods()) == 1 and abs(periods()[0] - 250_000_000) < 1000
    assert _set(node, "mesh_publish_rate_hz", 0.5).successful
    assert len(periods()) == 2 and abs(periods()[1] - 2_000_000_000) < 1000
    assert _set(node, "map_publish_rate_hz", 0.0).successful and _set(node, "mesh_publish_rate_hz", 0.0).successful
    assert node._timers == []
    assert _set(node, "path_max_length", 5).successful
    assert node._state_out.path.maxlen == 5
    assert _set(node, "cloud_color_mode", "rgb").successful and node.cfg.cloud_color_mode == "rgb"
    assert _set(node, "use_sim_time", True).successful


def test_invalid_startup_values_refused(ros):
    with pytest.raises(Exception, match="voxel_size_m"):
        PrismNode(
            context=ros.context,
            filter_factory=FakeFilter,
            warmup=False,
            parameter_overrides=[Parameter("voxel_size_m", value=10.0)],
        )
    with pytest.raises(ConfigError, match="depth_min_m"):
        PrismNode(
            context=ros.context,
            filter_factory=FakeFilter,
            warmup=False,
            parameter_overrides=[Parameter("depth_min_m", value=5.0)],
        )
    with pytest.raises(ConfigError, match="control_mode"):
        PrismNode(
            context=ros.context,
            filter_factory=FakeFilter,
            warmup=False,
            parameter_overrides=[Parameter("control_mode", value="gps")],
        )


def test_params_file_override(ros, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "prism:\n  ros__parameters:\n    voxel_size_m: 0.03\n    world_frame: map\n"
        "    T_base_camera_xyz_m: [0.1, 0.0, 0.2]\n    queue_size: 7\n"
    )
    n = PrismNode(
        context=ros.context, filter_factory=FakeFilter, warmup=False, cli_args=["--ros-args", "--params-file", str(f)]
    )
    try:
        assert n.cfg.voxel_size_m == 0.03 and n.cfg.world_frame == "map" and n.cfg.queue_size == 7
        assert n.T_base_camera[:3, 3].tolist() == [0.1, 0.0, 0.2]
    finally:
        n.destroy_node()
