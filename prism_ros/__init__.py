"""prism_ros: PRISM probabilistic dense RGB-D SLAM (filter core, offline runner, ROS 2 node)."""

__version__ = "0.1.0"

import os as _os

# Numba's OpenMP threads must sleep, not spin, when they wait: the filter shares its cores with drivers,
# the player or the ROS executor, and spinning threads stall every parallel kernel (docs/design.md,
# "Implementation notes").  Set before any kernel runs; an explicit user setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
