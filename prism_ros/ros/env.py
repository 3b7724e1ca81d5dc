"""Process environment for ROS: an exclusive ROS_DOMAIN_ID and loopback-only discovery.

Used by the soak tool (which starts the node and the player as subprocesses) and by the
tests.  Imports nothing from ROS.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

__all__ = ["claim_domain_id", "ros_env"]

_DOMAIN_LOCKS: List[Any] = []  # the open lock files: a claim lasts as long as the process


def claim_domain_id(preferred: int) -> int:
    """A ROS_DOMAIN_ID no other process on this machine has claimed through this function.

    The claim is an exclusive ``flock`` on ``$TMPDIR/prism_ros_domain_<id>.lock``, held until the process
    exits.  Tries ``preferred`` first, then other ids in 1..101 (the range safe with default ports).
    """
    import fcntl
    import tempfile

    candidates = [preferred] + [((preferred - 1 + k) % 101) + 1 for k in range(1, 101)]
    for d in candidates:
        path = os.path.join(tempfile.gettempdir(), f"prism_ros_domain_{d}.lock")
        f = open(path, "a")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCKS.append(f)
        return d
    raise RuntimeError("no free ROS domain id in 1..101")


def ros_env(domain_id: int, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a ROS subprocess: loopback discovery, this domain id."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env.pop("ROS_STATIC_PEERS", None)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return env
