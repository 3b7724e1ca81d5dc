"""rviz/prism.rviz shows the mesh and the occupancy grid beside the cloud (transient local)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_rviz_shows_mesh_and_occupancy():
    doc = yaml.safe_load((ROOT / "rviz" / "prism.rviz").read_text())
    displays = {d["Class"]: d for d in doc["Visualization Manager"]["Displays"]}
    for cls, topic in (
        ("rviz_default_plugins/MarkerArray", "/prism/mesh"),
        ("rviz_default_plugins/Map", "/prism/occupancy"),
        ("rviz_default_plugins/PointCloud2", "/prism/map_cloud"),
    ):
        d = displays[cls]
        assert d["Enabled"] and d["Topic"]["Value"] == topic
        assert d["Topic"]["Durability Policy"] == "Transient Local"  # the publishers are latched
