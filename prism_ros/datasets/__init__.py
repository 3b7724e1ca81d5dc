"""RGB-D dataset readers.

``open_dataset(path, start=0, frames=None, **kw)`` picks the reader:

* a named sequence (:func:`register_sequence`; ``"synthetic"`` comes from ``prism_ros.sim.synthetic`` through an entry
  point, ``kw`` going to its constructor): ``"synthetic"`` has ``start + frames`` frames (150 when ``frames`` is None)
  at 640x480; ``"synthetic:<n>@<w>x<h>"`` with ``",seed=<s>"``, ``",clean"``, ``",speed=<x>"``, ``",readout=<s>"`` and
  ``",exposure=<s>"`` suffixes (the name a sequence prints opens it again); ``start``/``frames`` select a
  window, frame i at (start + i) / fps;
* a folder accepted by one of :data:`DETECTORS`, tried in order (TUM RGB-D: ``rgb.txt`` + ``depth.txt``;
  7-Scenes: ``frame-XXXXXX.depth.png``; EuRoC ASL folders; EuRoC ROS 1 ``.bag`` files with
  ``calib=<ASL folder>``).  New formats: :func:`register_dataset`; ``cls(path, start=, frames=, **kw)``.

Every reader implements the :class:`Dataset` protocol (``name``, ``camera``, frames, ``stamps()``,
``gt_poses()``) and declares more through :mod:`prism_ros.datasets.capabilities`.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Tuple

from .base import Dataset, DatasetBase, Frame, FrameLoadError
from .euroc import EurocDataset, is_euroc_folder
from .euroc_bag import EurocBagDataset, is_euroc_bag
from .sevenscenes import SevenScenesDataset, is_sevenscenes_folder
from .tum import TumDataset, is_tum_folder

__all__ = [
    "Dataset",
    "DatasetBase",
    "Frame",
    "FrameLoadError",
    "TumDataset",
    "SevenScenesDataset",
    "EurocDataset",
    "EurocBagDataset",
    "DETECTORS",
    "register_dataset",
    "register_sequence",
    "sequence_opener",
    "detect_format",
    "is_euroc",
    "open_dataset",
]

#: (format name, detect_fn(path) -> bool, class) tried in order by open_dataset.
DETECTORS: List[Tuple[str, Callable[[str], bool], type]] = [
    ("TUM RGB-D (rgb.txt + depth.txt)", is_tum_folder, TumDataset),
    ("7-Scenes (frame-XXXXXX.depth.png/.color.*/.pose.txt)", is_sevenscenes_folder, SevenScenesDataset),
    ("EuRoC MAV (ASL layout: mav0/cam0, mav0/cam1, mav0/imu0)", is_euroc_folder, EurocDataset),
    (
        "EuRoC MAV ROS 1 bag (/cam0/image_raw, /cam1/image_raw, /imu0; calibration from --calib)",
        is_euroc_bag,
        EurocBagDataset,
    ),
]


#: Named sequences that are not folders ("synthetic", "synthetic:<n>"): scheme -> opener(name, start=, frames=, **kw).
SEQUENCES: Dict[str, Callable[..., Dataset]] = {}
#: The entry-point group through which installed packages provide named sequences (the simulator
#: provides "synthetic"); the product never imports them.
SEQUENCE_ENTRY_POINTS = "prism_ros.sequences"


def register_sequence(scheme: str, opener: Callable[..., Dataset]) -> None:
    """Let :func:`open_dataset` open ``scheme`` and ``scheme:<spec>`` with ``opener(name, start=, frames=, **kw)``."""
    SEQUENCES[scheme] = opener


def sequence_opener(scheme: str) -> Optional[Callable[..., Dataset]]:
    """The opener of a named sequence: registered, or found in the ``prism_ros.sequences`` entry points."""
    if scheme not in SEQUENCES:
        from importlib.metadata import entry_points

        for ep in entry_points(group=SEQUENCE_ENTRY_POINTS):
            if ep.name == scheme:
                SEQUENCES[scheme] = ep.load()
                break
    return SEQUENCES.get(scheme)


def register_dataset(name: str, detect_fn: Callable[[str], bool], cls: type, first: bool = False) -> None:
    """Add a folder format to :func:`open_dataset` (``first=True`` to try it before the others)."""
    entry = (name, detect_fn, cls)
    if first:
        DETECTORS.insert(0, entry)
    else:
        DETECTORS.append(entry)


def detect_format(path: str) -> Optional[Tuple[str, type]]:
    """(format name, class) of the first detector that accepts ``path``, or None."""
    for name, fn, cls in DETECTORS:
        try:
            if fn(path):
                return name, cls
        except OSError:
            continue
    return None


def is_euroc(path: str) -> bool:
    """Whether ``path`` is a EuRoC recording (an ASL folder or a ROS 1 bag): the stereo options apply."""
    import os

    found = detect_format(path) if os.path.exists(str(path)) else None
    return found is not None and issubclass(found[1], EurocDataset)


def open_dataset(path: str, start: int = 0, frames: Optional[int] = None, **kw) -> Dataset:
    """Open a dataset by path (see the module docstring); raises ValueError if unrecognised."""
    p = str(path)
    opener = sequence_opener(p.split(":", 1)[0])
    if opener is not None:
        return opener(p, start=start, frames=frames, **kw)
    if not os.path.exists(p):
        raise ValueError(
            f"dataset path '{p}' does not exist (expected a dataset folder, 'synthetic' or 'synthetic:<n_frames>')"
        )
    found = detect_format(p)
    if found is None:
        expected = "; ".join(name for name, _, _ in DETECTORS)
        raise ValueError(
            f"'{p}' is not a recognised dataset folder. Expected one of: {expected}; or 'synthetic[:<n_frames>]'."
        )
    _, cls = found
    return cls(p, start=start, frames=frames, **kw)
