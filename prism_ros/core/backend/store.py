"""Frozen submaps written to disk, so that the back end's memory stays bounded on a long run.

A frozen submap is never fused again, only re-posed, and its TSDF is read only to compose the global map and to verify
a loop closure against it.  :class:`SubmapStore` keeps the TSDFs of the ``in_memory`` most recently frozen submaps in
memory and writes the older ones (their blocks, uncompressed ``.npz``: :meth:`~prism_ros.core.tsdf.TsdfMap.save`) to
a directory of its own, dropping them from memory.  A written submap is read back for each use (:meth:`tsdf`), voxel
for voxel the map it wrote; the last one read for a loop closure stays in memory until another is, since the
candidate of one keyframe is often the next one's too.  In memory: the active submap, ``in_memory`` frozen ones, the
one kept for closures, one being composed, and any that could not be written.  Surface samples, keys and poses stay
in memory.

The directory is made under ``directory`` ("" : the system's temporary directory) and removed by :meth:`close` or,
failing that, when the interpreter exits (not after a crash: the directories are named ``prism-submaps-*``).

Disk errors do not stop the back end: a submap that cannot be written (no such directory, a full disk) stays in
memory and is tried again at the next freeze; one that cannot be read back counts as not there (:meth:`tsdf` gives
None).  Both are counted (:attr:`write_failures`, :attr:`read_failures`) and said (:attr:`last_error`).  Not
thread-safe: the back end's worker owns it (or a caller holding the worker's lock).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import List, Optional

from prism_ros.core.tsdf import TsdfMap

from .submaps import Submap

__all__ = ["SubmapStore"]


class SubmapStore:
    """Frozen submaps beyond the ``in_memory`` most recent on disk under ``directory`` (module docstring); ``cfg``: the
    filter's configuration (the submaps' map parameters, as :func:`~prism_ros.core.backend.submaps.submap_map`)."""

    def __init__(self, cfg, in_memory: int, directory: str = ""):
        if int(in_memory) < 0:
            raise ValueError(f"in_memory must be at least 0, got {in_memory}")
        self.in_memory = int(in_memory)
        self._parent = directory or None
        self._params = (
            cfg.map_prior_sigma_m,
            cfg.map_min_sigma_m,
            cfg.map_max_observations,
            cfg.map_model_sigma_m,
            cfg.map_distance_sigma_ratio,
        )
        self._dir: Optional[tempfile.TemporaryDirectory] = None
        self._held: List[Submap] = []  # frozen submaps in memory, the oldest first
        self._paths: List[str] = []  # the files written
        self._read: Optional[tuple] = None  # (submap, its TSDF read back) kept for the next closure
        self._count = 0
        self._closed = False
        #: the bytes of the submaps on disk now
        self.bytes_on_disk = 0
        #: failed writes (the submap stayed in memory) and reads (it counted as not there)
        self.write_failures, self.read_failures = 0, 0
        self._write_error, self._read_error = "", ""

    @property
    def last_error(self) -> str:
        """The last failed read (it stands until a new graph), else the last failed write while none has succeeded
        since; "" when neither."""
        return self._read_error or self._write_error

    @property
    def on_disk(self) -> int:
        """The submaps on disk now."""
        return len(self._paths)

    @property
    def directory(self) -> Optional[str]:
        """Where the submaps are written (None until the first one is)."""
        return None if self._dir is None else self._dir.name

    def frozen(self, sub: Submap) -> None:
        """``sub`` was just frozen: it is kept in memory, and the oldest frozen ones beyond ``in_memory`` go to disk
        (one that fails stays, and is tried again next time)."""
        self._held.append(sub)
        while len(self._held) > self.in_memory and self._write(self._held[0]):
            self._held.pop(0)

    def tsdf(self, sub: Submap, keep: bool = False) -> Optional[TsdfMap]:
        """``sub``'s TSDF, read back from disk when it was written (None when that fails); ``keep``: the one read
        stays in memory until another is read with ``keep`` (a loop closure's candidate).  RuntimeError after
        :meth:`close` for a submap that was on disk."""
        if sub.map is not None:
            return sub.map
        if self._read is not None and self._read[0] is sub:
            return self._read[1]
        if self._closed:
            raise RuntimeError(f"submap {sub.id} was on disk, removed when the back end stopped")
        try:
            m = TsdfMap.load(sub.path, *self._params)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # gone, truncated, not a map
            self.read_failures += 1
            self._read_error = (
                f"submap {sub.id} could not be read back from {sub.path}, left out: {type(e).__name__}: {e}"
            )
            return None
        m.shrink_to_fit()
        if keep:
            self._read = (sub, m)
        return m

    def clear(self) -> None:
        """Forget every submap and its file (a new graph)."""
        for path in self._paths:
            _remove(path)
        self._held, self._paths, self._read = [], [], None
        self.bytes_on_disk = 0
        self._write_error, self._read_error = "", ""

    def close(self) -> None:
        """Forget every submap and remove the directory; a submap that was on disk cannot be read any more."""
        self.clear()
        self._closed = True
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _write(self, sub: Submap) -> bool:
        path = None
        try:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(
                    prefix="prism-submaps-", dir=self._parent, ignore_cleanup_errors=True
                )
            self._count += 1
            path = os.path.join(self._dir.name, f"submap_{self._count:06d}.npz")
            sub.map.save(path, compress=False)
            size = os.path.getsize(path)
        except OSError as e:  # it stays in memory
            self.write_failures += 1
            self._write_error = f"submap {sub.id} could not be written to disk, kept in memory: {type(e).__name__}: {e}"
            if path is not None:
                _remove(path)
            return False
        self._paths.append(path)
        self.bytes_on_disk += size
        self._write_error = ""
        sub.map, sub.path = None, path
        return True


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
