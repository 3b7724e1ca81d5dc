"""The back end's counts and timings (diagnostics, metrics.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

__all__ = ["BackEndStats"]


@dataclass
class BackEndStats:
    """Counts and timings over the back end's life (resets included); running sums, so bounded."""

    keyframes: int = 0
    submaps: int = 0
    loops_accepted: int = 0
    loops_rejected_verification: int = 0
    loops_rejected_gate: int = 0
    loops_rejected_uninformative: int = 0
    images_dropped: int = 0
    submaps_on_disk: int = 0
    submaps_on_disk_mb: float = 0.0
    submap_write_failures: int = 0
    submap_read_failures: int = 0
    optimisations: int = 0
    optimisation_ms_sum: float = 0.0
    optimisation_ms_max: float = float("nan")
    verifications: int = 0
    verification_ms_sum: float = 0.0
    compose_ms: float = float("nan")
    error: str = ""
    #: the submap store's last failure ("" : none since its last successful write)
    store_error: str = ""

    def optimised(self, ms: float) -> None:
        self.optimisations += 1
        self.optimisation_ms_sum += ms
        self.optimisation_ms_max = ms if not self.optimisation_ms_max >= ms else self.optimisation_ms_max

    def verified(self, ms: float) -> None:
        self.verifications += 1
        self.verification_ms_sum += ms

    def stored(self, store) -> None:
        """Take the counts of the back end's :class:`~prism_ros.core.backend.store.SubmapStore`."""
        self.submaps_on_disk, self.submaps_on_disk_mb = store.on_disk, store.bytes_on_disk / 2**20
        self.submap_write_failures, self.submap_read_failures = store.write_failures, store.read_failures
        self.store_error = store.last_error

    def figures(self) -> Dict[str, float]:
        mean = lambda s, n: s / n if n else float("nan")  # noqa: E731
        out = {
            k: getattr(self, k)
            for k in (
                "keyframes",
                "submaps",
                "loops_accepted",
                "loops_rejected_verification",
                "loops_rejected_gate",
                "loops_rejected_uninformative",
                "images_dropped",
                "submaps_on_disk",
                "submaps_on_disk_mb",
                "submap_write_failures",
                "submap_read_failures",
            )
        }
        out["optimisation_ms_mean"] = mean(self.optimisation_ms_sum, self.optimisations)
        out["optimisation_ms_max"] = self.optimisation_ms_max
        out["verification_ms_mean"] = mean(self.verification_ms_sum, self.verifications)
        out["compose_ms"] = self.compose_ms
        return out
