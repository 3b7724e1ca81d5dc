"""The shipped Fast DDS profile (``config/fastdds.xml``), used unless the user has their own.

A 640x480 colour + depth pair does not fit Fast DDS's default shared-memory segment; ``config/fastdds.xml`` gives the
shared-memory transport a 32 MiB segment (plus UDPv4 for other hosts).  See docs/transport.md, "Why it is needed".

:func:`use_default_profile` points ``FASTDDS_DEFAULT_PROFILES_FILE`` at that file in an environment mapping
(``os.environ`` by default: call it before ``rclpy.init``), unless the RMW is not Fast DDS,
``PRISM_FASTDDS_PROFILE=off``, or the user chose a profile (``FASTDDS_DEFAULT_PROFILES_FILE``, the deprecated
``FASTRTPS_DEFAULT_PROFILES_FILE``, ``FASTDDS_BUILTIN_TRANSPORTS``, or a ``DEFAULT_FASTDDS_PROFILES.xml`` in the working
directory unless ``SKIP_DEFAULT_XML_FILE=1``).  No rclpy import: the node, the player, ``prism-ros soak`` and the launch
files (:func:`fastdds_launch_actions`) share it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, MutableMapping, Optional

__all__ = [
    "PROFILE_ENV",
    "LEGACY_PROFILE_ENV",
    "PROFILE_FILE_NAME",
    "OPT_OUT_ENV",
    "ProfileChoice",
    "default_profile_path",
    "is_fastdds_rmw",
    "choose_profile",
    "use_default_profile",
    "fastdds_launch_actions",
]

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2 name; rmw_fastrtps (Kilted) still reads it
BUILTIN_TRANSPORTS_ENV = "FASTDDS_BUILTIN_TRANSPORTS"
CWD_PROFILE_FILE = "DEFAULT_FASTDDS_PROFILES.xml"  # loaded by Fast DDS from the working directory
SKIP_CWD_PROFILE_ENV = "SKIP_DEFAULT_XML_FILE"
PROFILE_FILE_NAME = "fastdds.xml"
OPT_OUT_ENV = "PRISM_FASTDDS_PROFILE"  # "off": leave Fast DDS's built-in defaults


@dataclass(frozen=True)
class ProfileChoice:
    """What :func:`choose_profile` decided: ``path`` (the Fast DDS profile in use; None: built-in defaults or
    another RMW), ``source`` (``"prism_ros"``: the shipped file, set by us; ``"user"``; ``"off"``; ``"other-rmw"``;
    ``"missing"``: the shipped file was not found) and ``message`` (one line for the log).
    """

    path: Optional[str]
    source: str
    message: str


def default_profile_path() -> Optional[str]:
    """``config/fastdds.xml`` of this package (source tree, pip package data or the ament
    share directory: it lies next to ``config/prism.yaml`` in each), or None if absent."""
    from prism_ros.config import default_config_path

    try:
        cfg_dir = os.path.dirname(default_config_path())
    except FileNotFoundError:
        return None
    path = os.path.join(cfg_dir, PROFILE_FILE_NAME)
    return path if os.path.isfile(path) else None


def is_fastdds_rmw(env: MutableMapping[str, str]) -> bool:
    """True when rclpy will load Fast DDS: RMW_IMPLEMENTATION unset/empty (the default RMW
    of Humble to Kilted) or one of rmw_fastrtps_cpp / _dynamic_cpp."""
    rmw = env.get("RMW_IMPLEMENTATION", "").strip()
    return rmw == "" or rmw.startswith("rmw_fastrtps")


def _user_choice(env: MutableMapping[str, str], cwd: str) -> Optional[str]:
    """A description of the user's own Fast DDS configuration, or None if there is none."""
    for name in (PROFILE_ENV, LEGACY_PROFILE_ENV):
        if name in env:
            value = env[name]
            return f"{name}={value}"
    if env.get(BUILTIN_TRANSPORTS_ENV):
        return f"{BUILTIN_TRANSPORTS_ENV}={env[BUILTIN_TRANSPORTS_ENV]}"
    if env.get(SKIP_CWD_PROFILE_ENV, "") != "1" and os.path.isfile(os.path.join(cwd, CWD_PROFILE_FILE)):
        return os.path.join(cwd, CWD_PROFILE_FILE)
    return None


def choose_profile(
    env: MutableMapping[str, str], profile_path: Optional[str] = None, cwd: Optional[str] = None
) -> ProfileChoice:
    """Decide which Fast DDS profile applies and, when it is the shipped one, set
    ``env[FASTDDS_DEFAULT_PROFILES_FILE]`` (the only change to ``env``).  ``profile_path``: the shipped file
    (default :func:`default_profile_path`); ``cwd``: the process's working directory (default ``os.getcwd()``).
    """
    if not is_fastdds_rmw(env):
        return ProfileChoice(
            None,
            "other-rmw",
            f"RMW_IMPLEMENTATION={env.get('RMW_IMPLEMENTATION')}: the Fast DDS profile "
            f"{PROFILE_FILE_NAME} does not apply; size that middleware's shared-memory / "
            f"socket buffers for 1-2 MB images yourself (docs/transport.md)",
        )
    if env.get(OPT_OUT_ENV, "").strip().lower() == "off":
        return ProfileChoice(
            None,
            "off",
            f"{OPT_OUT_ENV}=off: Fast DDS built-in transports (a 512 KiB "
            f"shared-memory segment; 640x480 images may be lost between processes)",
        )
    user = _user_choice(env, os.getcwd() if cwd is None else cwd)
    if user is not None:
        path = env.get(PROFILE_ENV) or env.get(LEGACY_PROFILE_ENV) or None
        shipped = profile_path if profile_path is not None else default_profile_path()
        if path and shipped and os.path.abspath(path) == os.path.abspath(shipped):
            return ProfileChoice(path, "prism_ros", f"Fast DDS profile {path} (prism_ros default, already set)")
        return ProfileChoice(
            path, "user", f"Fast DDS profile: the user's ({user}); prism_ros's {PROFILE_FILE_NAME} not used"
        )
    shipped = profile_path if profile_path is not None else default_profile_path()
    if shipped is None:
        return ProfileChoice(
            None,
            "missing",
            f"prism_ros {PROFILE_FILE_NAME} not found: Fast DDS defaults "
            f"(640x480 images may be lost between processes)",
        )
    env[PROFILE_ENV] = shipped
    return ProfileChoice(
        shipped, "prism_ros", f"Fast DDS profile {shipped} (prism_ros default; set {PROFILE_ENV} to use your own)"
    )


def use_default_profile(
    env: Optional[MutableMapping[str, str]] = None, log: Optional[Callable[[str], None]] = None
) -> ProfileChoice:
    """:func:`choose_profile` on ``env`` (default ``os.environ``: call before ``rclpy.init``)
    and log its one-line message (default: to stderr, prefixed ``prism_ros:``; pass
    ``log=lambda s: None`` to keep quiet)."""
    choice = choose_profile(os.environ if env is None else env)
    if log is None:
        print(f"prism_ros: {choice.message}", file=sys.stderr, flush=True)
    else:
        log(choice.message)
    return choice


def fastdds_launch_actions(profile_path: str) -> list:
    """Launch actions that give every process of a launch file ``profile_path`` (the shipped
    ``share/prism_ros/config/fastdds.xml``) unless :func:`choose_profile` finds a user's
    profile or another RMW in the launch's environment: a ``SetEnvironmentVariable`` (only
    then) and a ``LogInfo`` with the decision."""
    from launch.actions import LogInfo, SetEnvironmentVariable

    choice = choose_profile(dict(os.environ), profile_path=profile_path)
    actions = [LogInfo(msg="prism_ros: " + choice.message)]
    if choice.source == "prism_ros":
        actions.insert(0, SetEnvironmentVariable(PROFILE_ENV, choice.path))
    return actions
