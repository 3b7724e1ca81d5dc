"""The shipped Fast DDS profile (config/fastdds.xml) and prism_ros.ros.transport.

* which profile applies: the shipped one unless the user chose one (either variable name,
  an empty value, FASTDDS_BUILTIN_TRANSPORTS, DEFAULT_FASTDDS_PROFILES.xml in the working
  directory) or the RMW is not Fast DDS; the user's environment is never changed;
* the XML: its shared-memory segment holds 10 frames of 640x480 rgb8 + 32FC1;
* Fast DDS accepts it: a process that creates an rclpy node with it maps a shared-memory
  segment of that size (/proc/self/maps), and logs no error; without it the segment is
  Fast DDS's default 512 KiB.
"""

import os
import subprocess
import sys
import textwrap
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from prism_ros.ros import transport as tr

ROOT = Path(__file__).resolve().parents[1]
XML = ROOT / "config" / "fastdds.xml"
NS = {"d": "http://www.eprosima.com"}
FRAME_BYTES = 640 * 480 * 3 + 640 * 480 * 4  # rgb8 + 32FC1
PLAYER_DEPTH = 10  # KEEP_LAST depth of prism_ros.ros.player's publishers (reliable_qos(10) / sensor_qos(.., 10))
SHIPPED = "/opt/prism/share/prism_ros/config/fastdds.xml"


def _choose(env, tmp_path, **kw):
    return tr.choose_profile(env, profile_path=SHIPPED, cwd=str(tmp_path), **kw)


def test_shipped_profile_when_the_user_set_none(tmp_path):
    env = {"ROS_DOMAIN_ID": "65"}
    c = _choose(env, tmp_path)
    assert c.source == "prism_ros" and c.path == SHIPPED
    assert env == {"ROS_DOMAIN_ID": "65", "FASTDDS_DEFAULT_PROFILES_FILE": SHIPPED}
    assert SHIPPED in c.message
    for rmw in ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp", ""):
        env = {"RMW_IMPLEMENTATION": rmw}
        assert _choose(env, tmp_path).source == "prism_ros" and env["FASTDDS_DEFAULT_PROFILES_FILE"] == SHIPPED
    # set by a parent (prism-ros soak): reported as ours, left as it is
    env = {"FASTDDS_DEFAULT_PROFILES_FILE": SHIPPED}
    c = _choose(env, tmp_path)
    assert c.source == "prism_ros" and env == {"FASTDDS_DEFAULT_PROFILES_FILE": SHIPPED}


@pytest.mark.parametrize(
    "user_env",
    [
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/home/me/my_fastdds.xml"},
        {"FASTRTPS_DEFAULT_PROFILES_FILE": "/home/me/old_name.xml"},  # deprecated, still read by rmw_fastrtps
        {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    ],
)
def test_a_users_profile_wins_and_is_not_touched(tmp_path, user_env):
    env = dict(user_env, ROS_DOMAIN_ID="65")
    before = dict(env)
    c = _choose(env, tmp_path)
    assert c.source == "user" and env == before
    assert c.path == (
        user_env.get("FASTDDS_DEFAULT_PROFILES_FILE") or user_env.get("FASTRTPS_DEFAULT_PROFILES_FILE") or None
    )
    assert "user" in c.message


def test_default_xml_in_the_working_directory_is_the_users(tmp_path):
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    env = {}
    c = _choose(env, tmp_path)
    assert c.source == "user" and env == {} and "DEFAULT_FASTDDS_PROFILES.xml" in c.message
    env = {"SKIP_DEFAULT_XML_FILE": "1"}  # Fast DDS then ignores that file
    assert _choose(env, tmp_path).source == "prism_ros" and env["FASTDDS_DEFAULT_PROFILES_FILE"] == SHIPPED


def test_opt_out_leaves_fast_dds_defaults(tmp_path):
    for value in ("off", "OFF", " off "):
        env = {"PRISM_FASTDDS_PROFILE": value}
        c = _choose(env, tmp_path)
        assert c.source == "off" and c.path is None and env == {"PRISM_FASTDDS_PROFILE": value}
    env = {"PRISM_FASTDDS_PROFILE": "on"}  # anything else: the shipped profile
    assert _choose(env, tmp_path).source == "prism_ros"


def test_other_rmw_is_left_alone(tmp_path):
    env = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    c = _choose(env, tmp_path)
    assert c.source == "other-rmw" and c.path is None and env == {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert "rmw_cyclonedds_cpp" in c.message
    assert not tr.is_fastdds_rmw({"RMW_IMPLEMENTATION": "rmw_zenoh_cpp"})


def test_missing_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "default_profile_path", lambda: None)
    env = {}
    c = tr.choose_profile(env, cwd=str(tmp_path))
    assert c.source == "missing" and env == {}


def test_use_default_profile_logs_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    env = {}
    c = tr.use_default_profile(env, log=lines.append)
    assert c.path == str(XML) and env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(XML)
    assert lines == [c.message]


def test_default_profile_path_is_the_source_tree_file():
    assert tr.default_profile_path() == str(XML)


def test_launch_actions_set_the_profile_only_without_a_users(monkeypatch, tmp_path):
    # `launch` is not installable here: stand-ins record the actions' arguments
    fake = types.ModuleType("launch.actions")
    fake.LogInfo = lambda msg: ("LogInfo", msg)
    fake.SetEnvironmentVariable = lambda name, value: ("SetEnvironmentVariable", name, value)
    monkeypatch.setitem(sys.modules, "launch", types.ModuleType("launch"))
    monkeypatch.setitem(sys.modules, "launch.actions", fake)
    monkeypatch.chdir(tmp_path)
    for k in (
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        "FASTDDS_BUILTIN_TRANSPORTS",
        "RMW_IMPLEMENTATION",
    ):
        monkeypatch.delenv(k, raising=False)
    acts = tr.fastdds_launch_actions(SHIPPED)
    assert acts[0] == ("SetEnvironmentVariable", "FASTDDS_DEFAULT_PROFILES_FILE", SHIPPED)
    assert acts[1][0] == "LogInfo" and len(acts) == 2
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ  # decided on a copy
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/home/me/mine.xml")
    acts = tr.fastdds_launch_actions(SHIPPED)
    assert [a[0] for a in acts] == ["LogInfo"] and "/home/me/mine.xml" in acts[0][1]


def _xml():
    return ET.parse(XML).getroot()


def test_xml_shared_memory_segment_holds_the_player_history():
    root = _xml()
    descs = {d.findtext("d:transport_id", namespaces=NS): d for d in root.iterfind(".//d:transport_descriptor", NS)}
    kinds = {k: d.findtext("d:type", namespaces=NS) for k, d in descs.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]
    shm = next(d for d in descs.values() if d.findtext("d:type", namespaces=NS) == "SHM")
    segment = int(shm.findtext("d:segment_size", namespaces=NS))
    assert segment >= PLAYER_DEPTH * FRAME_BYTES  # 21.5 MB
    assert segment == 32 * 2**20
    part = root.find(".//d:participant", NS)
    assert part.get("is_default_profile") == "true"
    used = [e.text for e in part.iterfind("d:rtps/d:userTransports/d:transport_id", NS)]
    assert sorted(used) == sorted(descs)  # both declared transports, nothing undeclared
    assert part.findtext("d:rtps/d:useBuiltinTransports", namespaces=NS) == "false"


_PROBE = textwrap.dedent(
    """
    import os, rclpy
    rclpy.init()
    node = rclpy.create_node("prism_transport_probe")
    segs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if (path.startswith("/dev/shm/fastdds_") and not name.startswith("fastdds_port")
                    and not name.endswith("_el")):
                segs.add(path)
    for s in sorted(segs):
        print("SEGMENT", os.path.getsize(s))
    node.destroy_node()
    rclpy.shutdown()
    """
)


def _probe(profile_env):
    pytest.importorskip("rclpy")
    from prism_ros.ros.env import claim_domain_id, ros_env

    env = ros_env(claim_domain_id(65))
    for k in (
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        "FASTDDS_BUILTIN_TRANSPORTS",
        "PRISM_FASTDDS_PROFILE",
    ):
        env.pop(k, None)
    env.update(profile_env)
    p = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    sizes = [int(ln.split()[1]) for ln in p.stdout.splitlines() if ln.startswith("SEGMENT")]
    return sizes, p.stdout + p.stderr


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm (Linux)")
@pytest.mark.ros
def test_fastdds_accepts_the_profile_and_maps_a_32_mib_segment():
    sizes, out = _probe({"FASTDDS_DEFAULT_PROFILES_FILE": str(XML)})
    # ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: rmw_fastrtps adds its own default shared-memory
    # transport (512 KiB) next to the profile's; the profile's is the 32 MiB one
    big = [s for s in sizes if s >= 32 * 2**20]
    assert len(big) == 1 and big[0] < 40 * 2**20, out  # the segment plus Fast DDS's bookkeeping
    assert all(s < 2**20 for s in sizes if s not in big), out
    for word in ("Error", "ERROR", "error", "Failed", "WARN"):
        assert word not in out, out
    # Fast DDS's own default, for contrast: the 512 KiB segment that 640x480 frames overflow
    sizes, out = _probe({})
    assert len(sizes) == 1 and 512 * 2**10 <= sizes[0] < 2**20, out
