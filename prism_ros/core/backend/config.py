"""The back end's declared parameters (scope ``pipeline``: the offline runner and the node alike); part of
:data:`prism_ros.config.PARAMS`.  Design and provenance: docs/backend.md."""

from __future__ import annotations

from typing import Tuple

from prism_ros.core.config import ParamSpec
from prism_ros.core.config import spec as _p

__all__ = ["BACKEND_PARAMS"]

BACKEND_PARAMS: Tuple[ParamSpec, ...] = (
    _p(
        "backend_enabled",
        False,
        "Run the back end beside the filter: keyframe submaps, a pose graph (GTSAM iSAM2) with verified loop "
        "closures, and global outputs in map_frame composed from the submaps at their optimised poses.",
        scope="pipeline",
    ),
    _p(
        "backend_keyframe_distance_m",
        0.1,
        "A tracked frame becomes a keyframe (a graph node, fused into the active submap) once the camera has moved "
        "this far (m) from the last keyframe.",
        0.005,
        10.0,
        scope="pipeline",
    ),
    _p(
        "backend_keyframe_angle_deg",
        10.0,
        "A tracked frame becomes a keyframe once the camera has turned this far (deg) from the last keyframe.",
        0.5,
        180.0,
        scope="pipeline",
    ),
    _p(
        "backend_submap_distance_m",
        1.0,
        "A keyframe farther than this (m) from the active submap's anchor starts a new submap (the old one is frozen).",
        0.05,
        100.0,
        scope="pipeline",
    ),
    _p(
        "backend_submap_angle_deg",
        60.0,
        "A keyframe turned this far (deg) from the active submap's anchor starts a new submap.",
        1.0,
        180.0,
        scope="pipeline",
    ),
    _p(
        "backend_submap_max_blocks",
        3000,
        "A submap that holds this many voxel blocks is frozen and a new one starts (bounds a submap's memory).",
        64,
        1_000_000,
        scope="pipeline",
    ),
    _p(
        "backend_submaps_in_memory",
        4,
        "Frozen submaps kept in memory (the most recent); older ones are written to backend_submap_dir and read back "
        "to compose the global map or verify a loop closure.",
        0,
        100_000,
        scope="pipeline",
    ),
    _p(
        "backend_submap_dir",
        "",
        "Directory for the frozen submaps written to disk, in a subdirectory removed at exit ('': the system's "
        "temporary directory; on a tmpfs they stay in RAM).",
        scope="pipeline",
    ),
    _p(
        "backend_map_period_s",
        1.0,
        "The composed global map takes in the active submap's newest keyframes at most this often (s); a loop "
        "closure or a frozen submap updates it at once.",
        0.0,
        600.0,
        scope="pipeline",
    ),
    _p(
        "backend_voxel_factor",
        2,
        "Submap and composed-map voxels are this many times voxel_size_m (memory falls with its cube).",
        1,
        4,
        scope="pipeline",
    ),
    _p(
        "backend_loop_min_submap_gap",
        2,
        "Loop closure candidates are submaps at least this many older than the active one (younger ones overlap it "
        "by construction).",
        1,
        1000,
        scope="pipeline",
    ),
    _p(
        "backend_loop_max_candidates",
        1,
        "At most this many candidate submaps (the most overlapping) are verified per keyframe.",
        0,
        20,
        scope="pipeline",
    ),
    _p(
        "backend_loop_min_overlap",
        0.5,
        "A candidate submap must put this fraction of its surface samples in the keyframe's view at the graph's "
        "estimate.",
        0.01,
        1.0,
        scope="pipeline",
    ),
    _p(
        "backend_loop_search_sigma",
        3.0,
        "Candidate submaps are looked for within this many standard deviations of the keyframe's pose (its marginal "
        "in the graph) when none overlaps the view at the estimate; 0: at the estimate only.",
        0.0,
        10.0,
        scope="pipeline",
    ),
    _p(
        "backend_loop_min_variance_ratio",
        16.0,
        "A closure must be this many times more certain (variance trace, translation or rotation) than the graph's own "
        "estimate of the same relative pose: one no better risks more than it adds.",
        1.0,
        1e6,
        scope="pipeline",
    ),
    _p(
        "backend_loop_gate_mahalanobis2",
        22.46,
        "A verified closure is accepted only within this squared Mahalanobis distance of the graph's estimate (6 "
        "dof; 22.46 is the chi-square 99.9 % point).",
        1.0,
        1e6,
        scope="pipeline",
    ),
    _p(
        "backend_loop_kernel_scale",
        5.0,
        "Scale of the Cauchy robust kernel on loop-closure factors (whitened units); at least the square root of "
        "backend_loop_gate_mahalanobis2, or a closure the gate accepts may be ignored.",
        0.01,
        100.0,
        scope="pipeline",
    ),
    _p(
        "backend_queue_size",
        8,
        "Keyframe images waiting for the back end's worker; beyond it a keyframe enters the graph without its image "
        "(no fusion, no closure), so the filter never waits.",
        1,
        1000,
        scope="pipeline",
    ),
)
