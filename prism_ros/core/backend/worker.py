"""The back end beside the filter: keyframes in; a pose graph with verified loop closures out, off the filter's thread.

Filter thread, :meth:`BackEnd.on_step` (a pipeline sink: any object with ``result`` (a StepResult) and ``frame`` (rgb,
depth, depth_sigma)): bookkeeping only.  It follows the covariance of the relative motion since the last keyframe (the
error model's lag formula, :func:`~prism_ros.core.uncertainty.relative_covariance`), and once the camera has moved
``backend_keyframe_distance_m`` or turned ``backend_keyframe_angle_deg`` since the last keyframe, a tracked frame
becomes a keyframe: its pose, that covariance and, while fewer than ``backend_queue_size`` wait, its images go to the
worker's queue.  With ``block_when_full`` (offline) it waits for room instead, so an offline run is deterministic.

Worker thread, per keyframe (:meth:`BackEnd._process`):

    1. graph    the keyframe's node and its odometry factor
    2. submap   the images fused into the active submap; a new one, the old one frozen, per starts_new_submap;
                frozen submaps beyond the backend_submaps_in_memory newest go to disk (SubmapStore)
    3. loops    frozen submaps at least backend_loop_min_submap_gap older that overlap the view at the graph's
                estimate (or, when none does, within backend_loop_search_sigma of it: candidates.py) are
                registered densely (LoopVerifier), the most overlapping first; a closure that
                verifies, is backend_loop_min_variance_ratio times more certain than the graph in translation or
                rotation, and lies within backend_loop_gate_mahalanobis2 of the graph becomes a robust factor
    4. publish  the optimised keyframe poses and marginals, the correction T_map_odom

The map frame is the odom frame at the first keyframe.  The global map (every submap composed at its optimised anchor
pose, with its marginal: :func:`~prism_ros.core.backend.compose.compose_map`, free space carved from the keyframes'
depth at their optimised poses) is composed by the worker when :meth:`BackEnd.global_map` asked for it and something
changed: at once after a loop closure or a frozen submap, at most every ``backend_map_period_s`` for the active
submap's new keyframes (:class:`~prism_ros.core.backend.global_map.GlobalMapBuilder`).  A filter reset (an
INITIALISED step) starts a new graph.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from .. import se3
from ..camera import Camera
from ..image import InvalidFrameError
from ..threads import lower_priority
from ..tsdf import TsdfMap
from ..types import StepOutcome
from .candidates import eligible, in_view, plausible, within_uncertainty
from .closure import LoopVerifier, variance_gain
from .global_map import GlobalMapBuilder
from .graph import PoseGraph
from .odometry import RelativeMotion, carry
from .stats import BackEndStats
from .store import SubmapStore
from .submaps import Keyframe, Submap, moved_beyond, starts_new_submap, submap_map, view_fraction

__all__ = ["BackEnd"]

#: how much nicer than the filter's thread the worker runs (Linux nice)
WORKER_NICE = 5
#: a submap that failed to register (or the gate) is not tried again for this many keyframes
LOOP_RETRY_KEYFRAMES = 5
#: why :meth:`BackEnd.verify_closure` refused a closure
NO_REGISTRATION, UNINFORMATIVE, OUTSIDE_GATE = (
    "does not register",
    "not more certain than the graph",
    "outside the gate",
)
#: pyramid level of the depth a keyframe keeps for the composed map's free space
_SMALL_LEVEL = 2


@dataclass
class _Item:
    key: int
    stamp: float
    T_odom_c: np.ndarray
    rel_cov: Optional[np.ndarray]
    images: Optional[tuple]  # (rgb, depth, depth_sigma)
    generation: int
    inlier_average: float  # the filter's recent inlier ratio


class BackEnd:
    """Submaps, pose graph and loop closures beside one filter (module docstring).  ``cfg``: a PrismConfig (or any
    object with the filter's and the ``backend_*`` fields); ``camera``: the full-resolution intrinsics.

    Threads: the filter's calls :meth:`on_step`, :meth:`reset` and :meth:`pose_in_map`; any thread the readers
    (:meth:`correction`, :meth:`global_map`, :meth:`optimised_keyframes`, ...).  The graph and the submaps belong
    to the worker: a caller that needs them (:meth:`marginals`, :meth:`relative_marginal`, :meth:`compose_now`)
    takes the worker's lock.  A failure in the worker stops the back end (:attr:`error`); the filter goes on.
    """

    def __init__(self, cfg, camera: Camera, block_when_full: bool = False):
        self.cfg = cfg
        self.fcfg = cfg.filter_config() if hasattr(cfg, "filter_config") else cfg
        self.camera = camera
        self.block_when_full = bool(block_when_full)
        self.verifier = LoopVerifier(self.fcfg, camera)
        self.noise = self.verifier.noise
        self.stats = BackEndStats()
        self.store = SubmapStore(self.fcfg, cfg.backend_submaps_in_memory, cfg.backend_submap_dir)
        self._cv = threading.Condition()  # the queue and the published state
        self._own = threading.Lock()  # the graph and the submaps
        self._queue: Deque[_Item] = deque()
        self._busy = False
        self._stopped = False
        self._compose_wanted = False
        self._generation = 0
        self._reset_front()
        self._reset_back()
        self._thread = threading.Thread(target=self._run, name="prism-backend", daemon=True)
        self._thread.start()

    @property
    def error(self) -> str:
        """Why the worker stopped ("" while it runs)."""
        with self._cv:
            return self.stats.error

    @property
    def warning(self) -> str:
        """The submap store's last disk failure, while it stands ("" : none)."""
        with self._cv:
            return self.stats.store_error

    # ------------------------------------------------------------------ filter thread
    def _reset_front(self) -> None:
        self._rel: Optional[RelativeMotion] = None
        self._last_kf_T: Optional[np.ndarray] = None
        self._next_key = 0
        self._inlier_average: Optional[float] = None  # the filter's, over its tracked frames
        #: key -> (T_odom_k, odometry covariance from the previous keyframe) of the keyframes not yet processed
        self._pending: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def on_step(self, out) -> None:
        """One pipeline outcome (module docstring); cheap, never blocks unless ``block_when_full``."""
        res = getattr(out, "result", None)
        if res is None or self.stats.error:
            return
        if res.outcome is StepOutcome.INITIALISED or getattr(out, "was_reset", False):
            self.reset()
        if self._rel is not None:
            self._rel.step(res)
        if not res.tracking_ok:
            return
        a, w = self._inlier_average, self.fcfg.inlier_average_weight
        self._inlier_average = res.inlier_ratio if a is None else a + w * (res.inlier_ratio - a)
        c = self.cfg
        if self._last_kf_T is not None and not moved_beyond(
            self._last_kf_T, res.T_w_c, c.backend_keyframe_distance_m, c.backend_keyframe_angle_deg
        ):
            return
        key, self._next_key = self._next_key, self._next_key + 1
        rel = None if self._rel is None else self._rel.cov()
        self._rel = RelativeMotion(res)
        self._last_kf_T = np.asarray(res.T_w_c, dtype=np.float64).copy()
        f = out.frame
        with self._cv:
            while self.block_when_full and self._images_waiting() >= c.backend_queue_size and self._running():
                self._cv.wait(0.1)
            images = None
            if self._images_waiting() < c.backend_queue_size:
                images = (f.rgb, f.depth, getattr(f, "depth_sigma", None))
            else:
                self.stats.images_dropped += 1
            if rel is not None:
                self._pending[key] = (self._last_kf_T, rel)
            item = _Item(key, float(res.stamp), self._last_kf_T, rel, images, self._generation, self._inlier_average)
            self._queue.append(item)
            self._cv.notify_all()

    def reset(self) -> None:
        """The filter's world restarted (a reset, a loaded map): the next keyframe starts a new graph and new submaps;
        until it is processed there is no correction, no keyframe and no global map (call it on the filter's
        thread)."""
        with self._cv:
            self._generation += 1
            self._queue.clear()
            self._publish_empty()
            self._cv.notify_all()
        self._reset_front()

    def _publish_empty(self) -> None:
        self._latest: Optional[Tuple[int, np.ndarray, np.ndarray]] = None  # (key, T_odom_k, marginal)
        self._T_map_odom = np.eye(4)
        self._keyframes: Dict[int, Keyframe] = {}
        self._poses: Dict[int, np.ndarray] = {}
        self._global: Optional[TsdfMap] = None
        self._dirty = False  # the global map is out of date
        self._restructured = True  # ... and its frozen part too (a closure moved the submaps, or one was frozen)
        self._composed_at = -np.inf  # time.monotonic() of the last composition

    def _running(self) -> bool:
        return not (self._stopped or self.stats.error)

    def _images_waiting(self) -> int:
        return sum(1 for it in self._queue if it.images is not None) + int(self._busy)

    def pose_in_map(self, T_odom_c: np.ndarray, pose_cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T_map_c, its marginal covariance, T_map_odom) of the filter's latest pose (call it on the filter's thread):
        the latest processed keyframe's optimised pose and marginal, carried along the odometry since (the queued
        keyframes' factors, then the motion since the last keyframe).  Before the first keyframe is processed the map
        is the odom frame and the covariance the filter's ``pose_cov``."""
        with self._cv:
            p, T_map_odom = self._latest, self._T_map_odom.copy()
            chain = [v for k, v in sorted(self._pending.items()) if p is not None and k > p[0]]
        T_map_c = T_map_odom @ T_odom_c
        if p is None:
            return T_map_c, np.array(pose_cov, dtype=np.float64), T_map_odom
        _, T_prev, cov = p
        if self._rel is not None:
            chain.append((np.asarray(T_odom_c, dtype=np.float64), self._rel.cov()))
        for T_next, C in chain:
            cov = carry(cov, T_prev, T_next, C)
            T_prev = T_next
        return T_map_c, 0.5 * (cov + cov.T), T_map_odom

    # ------------------------------------------------------------------ any thread
    def correction(self) -> np.ndarray:
        """T_map_odom of the latest processed keyframe (identity before the first)."""
        with self._cv:
            return self._T_map_odom.copy()

    def optimised_keyframes(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys (K,), stamps (K,), filter poses T_odom_c (K,4,4), optimised poses T_map_c (K,4,4)) of the processed
        keyframes, in key order."""
        with self._cv:
            kfs = sorted(self._keyframes.values(), key=lambda k: k.key)
            X = dict(self._poses)
        if not kfs:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4, 4)), np.zeros((0, 4, 4))
        return (
            np.array([k.key for k in kfs], dtype=np.int64),
            np.array([k.stamp for k in kfs]),
            np.stack([k.T_odom_c for k in kfs]),
            np.stack([X.get(k.key, k.T_odom_c) for k in kfs]),
        )

    def marginals(self) -> np.ndarray:
        """(K,6,6) the processed keyframes' marginal covariances at the graph's current estimate, in key order."""
        with self._own:
            keys = sorted(self._keyframes)
            return np.stack([self.graph.marginal(k) for k in keys]) if keys else np.zeros((0, 6, 6))

    def relative_marginal(self, key_a: int, key_b: int) -> np.ndarray:
        """The graph's covariance of ``X_a^-1 X_b`` (:meth:`PoseGraph.relative_marginal`)."""
        with self._own:
            return self.graph.relative_marginal(key_a, key_b)

    def optimised_trajectory(self, stamps, T_odom: np.ndarray) -> np.ndarray:
        """The filter's poses ``T_odom`` (N,4,4) at ``stamps`` in the map frame: each carried by the correction of the
        latest keyframe at or before it (the first keyframe's before the first)."""
        _, ks, K_odom, K_map = self.optimised_keyframes()
        T_odom = np.asarray(T_odom, dtype=np.float64)
        if len(ks) == 0:
            return T_odom.copy()
        C = np.einsum("nij,njk->nik", K_map, np.stack([se3.inv(T) for T in K_odom]))
        idx = np.clip(np.searchsorted(ks, np.asarray(stamps, dtype=np.float64), side="right") - 1, 0, len(ks) - 1)
        return np.einsum("nij,njk->nik", C[idx], T_odom)

    @property
    def version(self) -> int:
        """Changes with every accepted loop closure and every reset (the path changed: re-publish it)."""
        with self._cv:
            return self._version + 1000003 * self._generation

    def global_map(self) -> Optional[TsdfMap]:
        """The latest composed global map (map frame), or None before the first.  Asks the worker for a new one when a
        loop closure moved the submaps or a submap was frozen since, or when the active submap has new keyframes and
        ``backend_map_period_s`` has passed since the last (a new map object makes the outputs' builders start over,
        so not for every keyframe)."""
        with self._cv:
            due = time.monotonic() - self._composed_at >= self.cfg.backend_map_period_s
            if self._dirty and (due or self._restructured or self._global is None):
                self._compose_wanted = True
                self._cv.notify_all()
            return self._global

    def compose_now(self) -> Optional[TsdfMap]:
        """Wait for the queue, then compose the global map of every submap, the active one included (offline; keeps no
        composed frozen part for later updates)."""
        self.flush()
        with self._own:
            self._compose(keep_base=False)
        with self._cv:
            return self._global

    def flush(self, timeout_s: float = 600.0) -> bool:
        """Wait until every queued keyframe is processed; False on timeout or when the worker failed."""
        t_end = time.monotonic() + timeout_s
        with self._cv:
            while (self._queue or self._busy) and self._running():
                self._cv.wait(0.1)
                if time.monotonic() > t_end:
                    return False
            return not self.stats.error

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():  # (else the store's directory goes at exit)
            with self._own:
                self.store.close()

    def figures(self) -> Dict[str, float]:
        with self._cv:
            return self.stats.figures()

    # ------------------------------------------------------------------ worker thread
    def _reset_back(self) -> None:
        self.graph = PoseGraph(self.cfg.backend_loop_kernel_scale)
        self.submaps: List[Submap] = []
        self._chain: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (T_odom of the last keyframe, cov from anchor)
        self._retry_after: Dict[int, int] = {}  # submap id -> the first key to try it again
        self._anchor_covs: Dict[int, np.ndarray] = {}  # anchor key -> its marginal (_anchor_cov)
        self._version = 0
        self._back_generation = self._generation
        self._builder = GlobalMapBuilder(self.fcfg, self.camera, _SMALL_LEVEL)
        self._publish_empty()

    def _run(self) -> None:
        lower_priority(WORKER_NICE)
        while True:
            with self._cv:
                while not (self._stopped or self._queue or (self._compose_wanted and self._dirty)):
                    self._cv.wait()
                if self._stopped:
                    return
                compose = self._compose_wanted and self._dirty  # a requested map first: it is bounded
                item = None if compose else self._queue.popleft()
                self._busy = True
            try:
                with self._own:
                    if item is not None and item.generation != self._back_generation:
                        self.store.clear()  # (its files: outside the lock the filter's thread takes)
                        with self._cv:
                            self._reset_back()
                    self._process(item) if item is not None else self._compose()
            except Exception as e:  # stop the back end, not the filter: the error is in the diagnostics
                with self._cv:
                    self.stats.error = f"{type(e).__name__}: {e}"
                    self._queue.clear()
                    self._busy = False
                    self._cv.notify_all()
                return
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    def _process(self, it: _Item) -> None:
        c = self.cfg
        # 1. graph: the node and its odometry factor
        self.graph.add_keyframe(it.key, it.T_odom_c, None if not self.graph.keys else it.rel_cov)
        kf = Keyframe(it.key, it.stamp, it.T_odom_c)
        frame = None
        if it.images is not None:
            try:
                frame = self.verifier.frame(*it.images)
            except InvalidFrameError:
                frame = None
        # the odometry's covariance from the active submap's anchor to this keyframe
        if self._chain is not None and it.rel_cov is not None:
            self._chain = (it.T_odom_c, carry(self._chain[1], self._chain[0], it.T_odom_c, it.rel_cov))
        # 2. submap: fuse, or freeze the active one and start a new one here
        frozen = False
        if frame is not None:
            active = self.submaps[-1] if self.submaps else None
            if active is None or starts_new_submap(
                active,
                it.T_odom_c,
                c.backend_submap_distance_m,
                c.backend_submap_angle_deg,
                c.backend_submap_max_blocks,
            ):
                if active is not None:
                    active.freeze()
                    self.store.frozen(active)
                    frozen = True
                active = Submap(len(self.submaps), it.key, it.T_odom_c, submap_map(self.fcfg, c.backend_voxel_factor))
                self.submaps.append(active)
                self._chain = (it.T_odom_c, np.zeros((6, 6)))
            active.fuse(frame, it.key, it.T_odom_c, self.camera, self.noise, self._chain[1])
            kf.small_level = min(_SMALL_LEVEL, len(frame.depth) - 1)
            kf.depth_small = frame.depth[kf.small_level].astype(np.float16)  # (mm at a few metres: free space)
        ms = self.graph.update()
        # 3. loops
        closed, ms_loops = self._close_loops(it.key, frame, it.inlier_average) if frame is not None else (False, 0.0)
        ms += ms_loops
        # 4. publish
        poses = self.graph.poses()
        M = self.graph.marginal(it.key)
        with self._cv:
            if it.generation != self._generation:  # a reset came meanwhile: publish nothing of the old graph
                return
            self._keyframes[it.key] = kf
            self._poses = poses
            self._latest = (it.key, it.T_odom_c, M)
            self._T_map_odom = self.graph.correction(it.key, it.T_odom_c)
            for k in [k for k in self._pending if k <= it.key]:
                del self._pending[k]
            self._dirty = self._dirty or closed or frozen or frame is not None or self._global is None
            self._restructured = self._restructured or closed or frozen
            self._version += int(closed)
            self.stats.keyframes += 1
            self.stats.submaps += int(len(self.submaps) > 0 and self.submaps[-1].keys == [it.key])
            self.stats.stored(self.store)
            self.stats.optimised(ms)

    def _close_loops(self, key: int, frame, inlier_reference: float) -> Tuple[bool, float]:
        """(closed, optimisation ms): the candidates of keyframe ``key`` verified in turn (module docstring, 3.)."""
        c, fc = self.cfg, self.fcfg
        seen = partial(view_fraction, camera=self.camera, depth_min=fc.depth_min_m, depth_max=fc.depth_max_m)
        subs = eligible(self.submaps, c.backend_loop_min_submap_gap, self._retry_after, key)
        X_k, r = self.graph.pose(key), c.backend_loop_search_sigma
        near, rest = in_view(subs, X_k, self.graph.pose, seen, c.backend_loop_min_overlap)
        searched = not near and bool(rest) and r > 0.0
        if searched:
            M_k, ovl = self.graph.marginal(key), c.backend_loop_min_overlap
            near = within_uncertainty(rest, M_k, self._anchor_cov, r, seen, ovl, fc.depth_max_m)
        closed, ms = False, 0.0
        for _, s, T_a_c in sorted(near, key=lambda x: -x[0])[: c.backend_loop_max_candidates]:
            rel = self.graph.relative_marginal(s.anchor_key, key)
            # a closure is at least as uncertain as its submap's content: skip one that cannot be informative
            if max(variance_gain(rel, s.internal_cov)) < c.backend_loop_min_variance_ratio:
                self.stats.loops_rejected_uninformative += 1
                continue
            if searched and not plausible(se3.inv(self.graph.pose(s.anchor_key)) @ X_k, T_a_c, rel, r):
                continue  # the pose that saw it is beyond the search under the exact relative marginal
            ok, why = self.verify_closure(key, frame, s, T_a_c, inlier_reference)
            if ok:  # optimised now: the next candidate is gated against a graph that holds this one
                ms += self.graph.update()
            closed |= ok
            if not ok and why != UNINFORMATIVE:  # it did not register or failed the gate: not again at once
                self._retry_after[s.id] = key + LOOP_RETRY_KEYFRAMES
        return closed, ms

    def _anchor_cov(self, key: int) -> np.ndarray:
        """An anchor's marginal, kept until the next loop closure moves the graph (odometry alone leaves it)."""
        m = self._anchor_covs.get(key)
        return m if m is not None else self._anchor_covs.setdefault(key, self.graph.marginal(key))

    def verify_closure(
        self, key: int, frame, sub: Submap, T_a_c_pred: np.ndarray, inlier_reference: float, add: bool = True
    ):
        """(accepted, why): keyframe ``key`` (its pyramid ``frame``) registered in frozen submap ``sub`` from the
        prediction ``T_a_c_pred`` (anchor frame; ``inlier_reference`` the filter's recent inlier ratio), then gated
        against the graph; with ``add``, an accepted closure becomes a factor (staged: the next update optimises).
        Runs on the worker, or with its lock held."""
        t0 = time.perf_counter()
        tsdf = self.store.tsdf(sub, keep=True)  # (None: it could not be read back)
        cl = (
            None
            if tsdf is None
            else self.verifier.register(frame, tsdf, T_a_c_pred, inlier_reference, self.cfg.backend_loop_min_overlap)
        )
        self.stats.verified((time.perf_counter() - t0) * 1e3)
        if cl is None:
            self.stats.loops_rejected_verification += 1
            return False, NO_REGISTRATION
        cl.cov = cl.cov + sub.internal_cov  # the submap's own content errs by its odometry since the anchor
        chk = self.graph.check_loop(sub.anchor_key, key, cl.T_a_c, cl.cov)
        if max(variance_gain(chk.cov - cl.cov, cl.cov)) < self.cfg.backend_loop_min_variance_ratio:  # (the graph's own)
            self.stats.loops_rejected_uninformative += 1
            return False, UNINFORMATIVE
        if chk.mahalanobis2 > self.cfg.backend_loop_gate_mahalanobis2:
            self.stats.loops_rejected_gate += 1
            return False, f"{OUTSIDE_GATE}: {np.sqrt(chk.mahalanobis2):.1f} sigma"
        if add:
            self.graph.add_loop(sub.anchor_key, key, cl.T_a_c, cl.cov)
            self._anchor_covs.clear()  # the graph moves at its next update
            self.stats.loops_accepted += 1
        return True, f"{np.sqrt(chk.mahalanobis2):.1f} sigma, inliers {cl.inlier_ratio:.2f}"

    def _compose(self, keep_base: bool = True) -> None:
        """Compose the global map (:class:`~prism_ros.core.backend.global_map.GlobalMapBuilder`): the frozen part
        again only after a closure or a frozen submap, or always without ``keep_base`` (offline)."""
        t0 = time.perf_counter()
        with self._cv:
            restructured = self._restructured
            self._compose_wanted, self._dirty, self._restructured = False, False, False
            kfs = sorted(self._keyframes.values(), key=lambda k: k.key)
            X = dict(self._poses)
            generation = self._generation
        subs = [s for s in self.submaps if s.anchor_key in X]
        if not subs:
            return

        def part(s):  # a marginal only for the submaps composed this time; one on disk is read when composed
            tsdf = s.map if s.map is not None else partial(self.store.tsdf, s)
            return tsdf, X[s.anchor_key], self.graph.marginal(s.anchor_key)

        out = self._builder.build(subs, part, kfs, X, restructured, keep_base)
        with self._cv:
            if generation == self._generation:  # not a map of the world before a reset
                self._global = out
                self._composed_at = time.monotonic()
                self.stats.compose_ms = (time.perf_counter() - t0) * 1e3
                self.stats.stored(self.store)  # (reads that failed)
