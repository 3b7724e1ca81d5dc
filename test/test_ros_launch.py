"""Static checks of the launch files and the RViz config (``launch`` is not on PyPI):
they parse, and the executables, params files and RViz files they name exist."""

import ast
import importlib
import configparser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = ["prism.launch.py", "replay.launch.py", "euroc.launch.py"]
TOPICS = {"/prism/map_cloud", "/prism/path", "/prism/pose", "/prism/odometry"}


def _console_scripts():
    setup = ROOT / "setup.py"
    if not setup.is_file():
        pytest.skip("setup.py not written yet")
    tree = ast.parse(setup.read_text())
    scripts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    for e in ast.literal_eval(v):
                        name, target = (s.strip() for s in e.split("=", 1))
                        scripts[name] = target
    assert scripts, "no console_scripts in setup.py"
    return scripts


def _module_constants(tree):
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                if isinstance(node.value, ast.Call) and getattr(node.value.func, "attr", "") == "join":
                    out[node.targets[0].id] = "/".join(ast.literal_eval(a) for a in node.value.args)
    return out


def _node_calls(tree):
    """(package, executable) keyword values of every launch_ros Node(...) call."""
    consts = _module_constants(tree)
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            kw = {}
            for k in node.keywords:
                if isinstance(k.value, ast.Constant):
                    kw[k.arg] = k.value.value
                elif isinstance(k.value, ast.Name):
                    kw[k.arg] = consts.get(k.value.id)
            calls.append(kw)
    return calls, consts


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_parses_and_names_existing_things(name):
    path = ROOT / "launch" / name
    src = path.read_text()
    tree = ast.parse(src, filename=str(path))
    compile(tree, str(path), "exec")
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in funcs
    calls, consts = _node_calls(tree)
    scripts = _console_scripts()
    ours = [c for c in calls if c.get("package") == "prism_ros"]
    assert ours, f"{name} starts no prism_ros executable"
    for c in ours:
        exe = c.get("executable")
        assert exe in scripts, f"{name}: executable {exe!r} is not a console_script of setup.py ({sorted(scripts)})"
        module, func = scripts[exe].split(":")
        assert callable(getattr(importlib.import_module(module), func, None)), f"{scripts[exe]} is not a function"
    # referenced share files exist in the source tree (and setup.py installs those folders)
    for key in ("PARAMS_FILE", "RVIZ_FILE"):
        assert key in consts, f"{name} does not name {key}"
        assert (ROOT / consts[key]).is_file(), f"{name}: {consts[key]} missing"
    setup_src = (ROOT / "setup.py").read_text()
    for folder in ("launch", "config", "rviz"):
        assert f'"{folder}/' in setup_src or f"'{folder}/" in setup_src, f"setup.py does not install {folder}/"
    # console_scripts are installed to lib/prism_ros (ros2 run), see setup.cfg
    cfg = ROOT / "setup.cfg"
    if cfg.is_file():
        cp = configparser.ConfigParser()
        cp.read(cfg)
        assert "lib/prism_ros" in cp.get("install", "install_scripts", fallback="")


def test_replay_launch_uses_sim_time_and_player():
    tree = ast.parse((ROOT / "launch" / "replay.launch.py").read_text())
    calls, consts = _node_calls(tree)
    exes = {c.get("executable") for c in calls}
    assert {"prism_node", "prism_player"} <= exes
    src = (ROOT / "launch" / "replay.launch.py").read_text()
    assert '"use_sim_time": True' in src and '"sensor_qos": "reliable"' in src


def test_euroc_launch_plays_with_the_imu_on_sim_time():
    """euroc.launch.py: player + node, the node on config/prism.yaml then config/euroc.yaml
    (in that order: the overlay wins), sim time, the player's IMU frame = the yaml's base frame."""
    src = (ROOT / "launch" / "euroc.launch.py").read_text()
    tree = ast.parse(src)
    calls, consts = _node_calls(tree)
    assert {"prism_node", "prism_player"} <= {c.get("executable") for c in calls}
    assert consts["EUROC_PARAMS_FILE"] == "config/euroc.yaml" and (ROOT / consts["EUROC_PARAMS_FILE"]).is_file()
    node = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", None) == "Node"
        and any(k.arg == "executable" and getattr(k.value, "id", None) == "NODE_EXECUTABLE" for k in n.keywords)
    )
    params = ast.unparse(next(k.value for k in node.keywords if k.arg == "parameters"))
    assert params == (
        "[LaunchConfiguration('params_file'), LaunchConfiguration('euroc_params_file'), {'use_sim_time': True}]"
    ), params
    declared = {
        n.args[0].value: ast.unparse(next(k.value for k in n.keywords if k.arg == "default_value"))
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", None) == "DeclareLaunchArgument"
        and any(k.arg == "default_value" for k in n.keywords)
    }
    for arg, const in (("params_file", "PARAMS_FILE"), ("euroc_params_file", "EUROC_PARAMS_FILE")):
        assert declared.get(arg) == f"os.path.join(share, {const})", (arg, declared.get(arg))
    base = yaml.safe_load((ROOT / "config" / "euroc.yaml").read_text())["/**"]["ros__parameters"]["base_frame"]
    assert _argument_after(tree, "--imu-frame-id") == [repr(base)]
    assert _argument_after(tree, "--rate") == ["LaunchConfiguration('rate')"]


def _argument_after(tree, flag):
    """What follows ``flag`` in every argument list of a launch file (unparsed)."""
    return [
        ast.unparse(lst.elts[i + 1])
        for lst in ast.walk(tree)
        if isinstance(lst, ast.List)
        for i, e in enumerate(lst.elts[:-1])
        if isinstance(e, ast.Constant) and e.value == flag
    ]


def test_prism_launch_remaps_all_inputs():
    src = (ROOT / "launch" / "prism.launch.py").read_text()
    for topic in ("camera/color/image_raw", "camera/depth/image_raw", "camera/color/camera_info", '"imu"', '"odom"'):
        assert topic in src


def test_rviz_config_shows_outputs():
    doc = yaml.safe_load((ROOT / "rviz" / "prism.rviz").read_text())
    vm = doc["Visualization Manager"]
    displays = {d["Class"]: d for d in vm["Displays"]}
    for cls in (
        "rviz_default_plugins/PointCloud2",
        "rviz_default_plugins/Path",
        "rviz_default_plugins/PoseWithCovariance",
        "rviz_default_plugins/Odometry",
    ):
        assert cls in displays, cls
    topics = {d["Topic"]["Value"] for d in vm["Displays"] if "Topic" in d}
    assert TOPICS <= topics
    cloud = displays["rviz_default_plugins/PointCloud2"]
    assert cloud["Topic"]["Durability Policy"] == "Transient Local"
    assert cloud["Color Transformer"] == "RGB8"
    from prism_ros.config import PARAMS

    world = next(p.default for p in PARAMS if p.name == "world_frame")
    assert vm["Global Options"]["Fixed Frame"] == world


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_gives_its_processes_the_fastdds_profile(name):
    """Every launch file hands config/fastdds.xml to the processes it starts, through
    prism_ros.ros.transport.fastdds_launch_actions (a user's profile wins; see test_ros_transport)."""
    path = ROOT / "launch" / name
    tree = ast.parse(path.read_text())
    consts = _module_constants(tree)
    assert consts.get("FASTDDS_FILE") == "config/fastdds.xml"
    assert (ROOT / consts["FASTDDS_FILE"]).is_file()
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("prism_ros.ros.transport", "fastdds_launch_actions") in imports
    gen = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")
    calls = [
        n for n in ast.walk(gen) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "fastdds_launch_actions"
    ]
    assert len(calls) == 1
    arg = calls[0].args[0]  # os.path.join(share, FASTDDS_FILE)
    assert isinstance(arg, ast.Call) and [getattr(a, "id", None) for a in arg.args] == ["share", "FASTDDS_FILE"]
    # its actions come before the nodes in the LaunchDescription (environment first)
    ret = next(n for n in ast.walk(gen) if isinstance(n, ast.Return))
    src = ast.unparse(ret.value)
    assert src.startswith("LaunchDescription(args + fastdds + ["), src


def test_setup_installs_the_fastdds_profile():
    src = (ROOT / "setup.py").read_text()
    assert '_files("config/*.xml")' in src  # share/prism_ros/config (colcon)
    tree = ast.parse(src)
    files = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "PACKAGE_CONFIG_FILES"
    )
    assert set(files) == {"prism.yaml", "fastdds.xml"}  # pip package data (BuildPyWithConfig)
    for f in files:
        assert (ROOT / "config" / f).is_file()
