"""prism_ros: ament_python package that also installs with plain pip.

* ``colcon build`` (full ROS 2 install): the ament index marker, package.xml,
  launch files, config and RViz files go into ``share/prism_ros``; the console
  scripts go into ``lib/prism_ros`` (see setup.cfg) so ``ros2 run prism_ros
  prism_node`` finds them.
* ``pip install '.[ros,test]'`` (virtual environment): the ROS 2 Python wheels
  come from the ``ros`` extra; ``config/prism.yaml`` and ``config/fastdds.xml`` are
  also copied into the package as ``prism_ros/config/`` so
  :func:`prism_ros.config.default_config_path` and
  :func:`prism_ros.ros.transport.default_profile_path` find them without a source tree.
"""

import os
from glob import glob

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = "prism_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


#: config/ files copied into the package: the parameters and the Fast DDS profile
#: (prism_ros.ros.transport finds fastdds.xml next to prism.yaml).
PACKAGE_CONFIG_FILES = ("prism.yaml", "fastdds.xml")


class BuildPyWithConfig(build_py):
    """Copy config/prism.yaml and config/fastdds.xml into the built package (non-editable installs).

    The source tree keeps one copy of each (config/); nothing is written into
    the source package, so there is no second copy to drift.
    """

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read ../config/ from the source tree
        dst_dir = os.path.join(self.build_lib, PACKAGE, "config")
        self.mkpath(dst_dir)
        for name in PACKAGE_CONFIG_FILES:
            self.copy_file(os.path.join(HERE, "config", name), os.path.join(dst_dir, name))


def _files(pattern):
    return sorted(f for f in glob(pattern) if os.path.isfile(f))


ROS_WHEELS = [
    # The ROS 2 Python wheels on PyPI; a colcon build gets these from the distro instead.
    "ros-rclpy",
    "ros-rmw-fastrtps-cpp",  # rclpy needs an RMW implementation to import
    "ros-sensor-msgs",
    "ros-geometry-msgs",
    "ros-nav-msgs",
    "ros-std-msgs",
    "ros-std-srvs",
    "ros-visualization-msgs",
    "ros-diagnostic-msgs",
    "ros-rosgraph-msgs",  # /clock from the player
    "ros-ament-index-python",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description=(
        "PRISM: probabilistic dense RGB-D SLAM (Gaussian TSDF map + pose/velocity Bayes filter) with a ROS 2 node"
    ),
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    if os.path.isfile(os.path.join(HERE, "README.md"))
    else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    cmdclass={"build_py": BuildPyWithConfig},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", _files("launch/*.py")),
        ("share/" + PACKAGE + "/config", _files("config/*.yaml") + _files("config/*.xml")),
        ("share/" + PACKAGE + "/rviz", _files("rviz/*.rviz")),
    ],
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "numba>=0.58",
        "scipy>=1.10",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "plyfile>=1.0",
        "psutil>=5.9",
        "rosbags>=0.9.20",
        "scikit-image>=0.21",
        "gtsam>=4.3",
        "opencv-python-headless>=4.8",
    ],
    extras_require={
        "ros": ROS_WHEELS,
        # evo: only a test (and the user, to check trajectories) reads it; metrics.json has the same ATE
        # ruff: test_style; its format style is pinned by the minor version
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6.0", "evo>=1.25", "ruff>=0.17,<0.18"],
        # prism-ros bench --peer open3d (Open3D's tensor dense SLAM); on Debian the wheel also needs
        # the system package libusb-1.0-0 (apt-get install libusb-1.0-0).
        "peer": ["open3d"],
    },
    tests_require=["pytest"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "prism-ros = prism_ros.cli:main",
            "prism_node = prism_ros.ros.node:main",
            "prism_player = prism_ros.ros.player:main",
        ],
        # named sequences open_dataset() opens without a folder; the product never imports the simulator
        "prism_ros.sequences": ["synthetic = prism_ros.sim.synthetic:open_synthetic"],
    },
)
