"""The one ROS-free pipeline that drives the filter: frames -> controls -> filter -> sinks.

``prism-ros run``, ``bench`` and the node's worker all drive :class:`Pipeline`; only the frames' source
and the results' sinks differ.  Per frame, :meth:`Pipeline.process`:

    1. order     a frame older than the last by more than ``jump_back_s`` (a replay restarted)
                 resets the filter; a frame not newer than the last is skipped
    2. control   the motion control since the previous frame (IMU or odometry), or None
    3. step      one :meth:`PrismFilter.step <prism_ros.core.filter.PrismFilter.step>`; a refused
                 frame (InvalidFrameError) is skipped, state and map untouched
    4. record    per-stage timings into :attr:`Pipeline.stats`; every sink's ``on_step``

:func:`run_dataset` is the offline loop over a dataset.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence

import numpy as np

from prism_ros.core import persistence
from prism_ros.core.camera import Camera
from prism_ros.core.controls import OdomBuffer
from prism_ros.core.image import InvalidFrameError
from prism_ros.core.imu import ImuBuffer, ImuControlSource, ImuNoise
from prism_ros.core.threads import lower_priority
from prism_ros.core.types import Control, StepResult
from prism_ros.datasets.base import FrameLoadError, check_pose
from prism_ros.datasets.capabilities import HasConfigHints, HasControls
from prism_ros.stats import CpuMeter, StageStats

__all__ = [
    "PipelineFrame",
    "Outcome",
    "Pipeline",
    "ControlSource",
    "ImuControls",
    "OdomControls",
    "DatasetControls",
    "Sink",
    "Recorder",
    "RunStats",
    "run_dataset",
    "imu_noise_from_config",
    "apply_dataset_hints",
    "prefetched",
    "LOADER_NICE",
]


@dataclass
class PipelineFrame:
    """One RGB-D frame for the pipeline (rgb uint8 HxWx3, depth float32 metres, 0 = invalid)."""

    stamp: float
    rgb: np.ndarray
    depth: np.ndarray
    depth_sigma: Optional[np.ndarray] = None
    index: int = -1
    T_w_c_gt: Optional[np.ndarray] = None
    meta: Any = None  # the caller's own data (e.g. the node's header stamp)

    @classmethod
    def from_dataset(cls, fr) -> "PipelineFrame":
        """From a :class:`prism_ros.datasets.base.Frame` (ground truth checked: a broken pose is None)."""
        gt = check_pose(fr.T_w_c_gt) if fr.T_w_c_gt is not None else None
        return cls(float(fr.stamp), fr.rgb, fr.depth, getattr(fr, "depth_sigma", None), int(fr.index), gt)


@dataclass
class Outcome:
    """What :meth:`Pipeline.process` did with a frame."""

    frame: PipelineFrame
    result: Optional[StepResult] = None  # None: the frame was skipped
    skipped: Optional[str] = None  # why it was skipped
    invalid: bool = False  # the filter refused it (InvalidFrameError): bad input
    was_reset: bool = False  # the input's time jumped back: the filter was reset first
    control: Optional[Control] = None
    control_note: Optional[str] = None  # why no control was used although a source is set
    step_ms: float = 0.0  # control + filter step, wall clock


class ControlSource(Protocol):
    """Motion controls between two frames (IMU, odometry, a dataset's IMU).  An optional
    ``on_step(outcome)`` is called after every step (:class:`ImuControls` uses it)."""

    def control(self, prev: PipelineFrame, cur: PipelineFrame, state) -> Optional[Control]: ...

    def reset(self, clear: bool) -> None: ...


class Sink(Protocol):
    def on_step(self, outcome: Outcome) -> None: ...


def imu_noise_from_config(cfg) -> ImuNoise:
    """:class:`ImuNoise` from a configuration's ``imu_*`` parameters (defaults: EuRoC's ADIS16448),
    the white-noise densities times ``imu_noise_density_scale`` (fitted on a real flight)."""
    k = float(cfg.imu_noise_density_scale)
    return ImuNoise(
        gyro_noise_density=k * float(cfg.imu_gyro_noise_density),
        gyro_random_walk=float(cfg.imu_gyro_random_walk),
        accel_noise_density=k * float(cfg.imu_accel_noise_density),
        accel_random_walk=float(cfg.imu_accel_random_walk),
        gyro_bias_sigma=float(cfg.imu_gyro_bias_sigma_radps),
        accel_bias_sigma=float(cfg.imu_accel_bias_sigma_mps2),
    )


class ImuControls:
    """The pipeline's IMU control source: :class:`prism_ros.core.imu.ImuControlSource` (the node's
    IMU topic, in an :class:`~prism_ros.core.imu.ImuBuffer`) between the frames' stamps.
    :attr:`note` says why a frame got no control."""

    def __init__(self, buffer: ImuBuffer, control_max_dt_s: float, bias_window_s: float = 0.0):
        self.source = ImuControlSource(buffer, control_max_dt_s, bias_window_s)

    @property
    def note(self) -> Optional[str]:
        return self.source.note

    def control(self, prev: PipelineFrame, cur: PipelineFrame, state) -> Optional[Control]:
        return self.source.control(prev.stamp, cur.stamp, state)

    def on_step(self, out: "Outcome") -> None:
        """A step that did not track restarts the bias window (:meth:`ImuControlSource.tracking_lost`)."""
        if out.result is not None and not out.result.tracking_ok:
            self.source.tracking_lost()

    def reset(self, clear: bool) -> None:
        self.source.reset(clear)


class OdomControls:
    """Odometry controls from an :class:`~prism_ros.core.controls.OdomBuffer` (the base frame's
    motion, moved into the camera frame with ``T_base_camera``)."""

    def __init__(self, buffer: OdomBuffer, T_base_camera: np.ndarray):
        self.buffer = buffer
        self.T_base_camera = np.asarray(T_base_camera, dtype=np.float64)
        self.note: Optional[str] = None

    def control(self, prev: PipelineFrame, cur: PipelineFrame, state) -> Optional[Control]:
        ctl = self.buffer.increment(prev.stamp, cur.stamp, self.T_base_camera)
        self.note = (
            None
            if ctl is not None
            else (f"no odometry covering [{prev.stamp:.3f}, {cur.stamp:.3f}] s; using the constant-velocity model")
        )
        return ctl

    def reset(self, clear: bool) -> None:
        if clear:
            self.buffer.clear()


class DatasetControls:
    """A dataset's own controls (``control_between(i_prev, i, state)``, e.g. EuRoC's IMU), restarted for this run."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.note: Optional[str] = None
        dataset.restart_controls()

    def control(self, prev: PipelineFrame, cur: PipelineFrame, state) -> Optional[Control]:
        return self.dataset.control_between(prev.index, cur.index, state)

    def reset(self, clear: bool) -> None:
        pass


def _default_filter_factory(cfg, camera: Camera, T_w_c0):
    from prism_ros.core.filter import PrismFilter

    return PrismFilter(cfg, camera, T_w_c0=T_w_c0)


class Pipeline:
    """Controls -> filter -> sinks for one camera (module docstring).  ``filter_factory(cfg, camera, T_w_c0)``
    builds the filter (default: PrismFilter); ``stats_maxlen`` bounds the per-stage statistics.
    """

    def __init__(
        self,
        cfg,
        camera: Camera,
        T_w_c0: Optional[np.ndarray] = None,
        controls: Optional[ControlSource] = None,
        sinks: Sequence[Sink] = (),
        filter_factory: Optional[Callable[..., Any]] = None,
        jump_back_s: float = 0.5,
        stats_maxlen: Optional[int] = None,
    ):
        self.cfg = cfg
        self.camera = camera
        self.T_w_c0 = None if T_w_c0 is None else np.asarray(T_w_c0, dtype=np.float64).copy()
        self.controls = controls
        self.sinks: List[Sink] = list(sinks)
        self.jump_back_s = float(jump_back_s)
        self.filter = (filter_factory or _default_filter_factory)(cfg, camera, self.T_w_c0)
        self.stats = StageStats(stats_maxlen)
        self.prev: Optional[PipelineFrame] = None  # the last frame the filter stepped
        self.last_result: Optional[StepResult] = None
        self.resets = 0

    # ------------------------------------------------------------------ per frame
    def process(self, frame: PipelineFrame) -> Outcome:
        """Run one frame through the pipeline (see the module docstring)."""
        out = Outcome(frame)
        # 1. order: time jumps back -> reset; not newer -> skip
        if self.prev is not None:
            if frame.stamp < self.prev.stamp - self.jump_back_s:
                self.reset(clear_controls=False)
                out.was_reset = True
            elif frame.stamp <= self.prev.stamp:
                out.skipped = f"frame at {frame.stamp:.6f} s is not newer than the last one ({self.prev.stamp:.6f} s)"
                return out
        t0 = time.perf_counter()
        # 2. control since the previous frame
        state = getattr(self.filter, "state", None)
        if self.controls is not None and self.prev is not None and state is not None:
            out.control = self.controls.control(self.prev, frame, state)
            out.control_note = getattr(self.controls, "note", None)
        # 3. the filter step
        try:
            res = self.filter.step(
                frame.rgb, frame.depth, frame.stamp, control=out.control, depth_sigma=frame.depth_sigma
            )
        except InvalidFrameError as e:
            out.skipped, out.invalid = str(e), True
            return out
        out.step_ms = (time.perf_counter() - t0) * 1e3
        out.result = self.last_result = res
        self.prev = frame
        # 4. statistics and sinks (the control source first: it may keep state per step)
        self.stats.add(res.timings_ms or {})
        if callable(getattr(self.controls, "on_step", None)):
            self.controls.on_step(out)
        for sink in self.sinks:
            sink.on_step(out)
        return out

    # ------------------------------------------------------------------ commands
    def reset(self, T_w_c0: Optional[np.ndarray] = None, clear_controls: bool = True) -> None:
        """Forget the map and the state (the next frame starts a new map at T_w_c0, default:
        the pipeline's).  ``clear_controls``: also drop buffered IMU / odometry samples (a
        user's reset; after a time jump the buffers already hold the new timeline)."""
        self.filter.reset(self.T_w_c0 if T_w_c0 is None else T_w_c0)
        self.prev = None
        self.last_result = None
        self.resets += 1
        if self.controls is not None:
            self.controls.reset(clear_controls)

    def save_map(self, path: str, extra: Optional[Dict[str, Any]] = None) -> str:
        """Save the map atomically (:func:`prism_ros.core.persistence.save_map`); returns the path."""
        m = self.filter.map
        if hasattr(m, "header"):  # a TsdfMap: versioned header + config
            return persistence.save_map(m, path, self.cfg, extra=extra)
        return persistence.atomic_write(path, m.save)

    def load_map(self, path: str, T_w_c0: Optional[np.ndarray] = None):
        """Load a compatible map and relocalise in it from ``T_w_c0`` (default: the pipeline's)."""
        m = persistence.load_map(path, self.cfg)  # MapCompatibilityError: a clear message
        persistence.install_map(self.filter, m, self.T_w_c0 if T_w_c0 is None else T_w_c0)
        self.prev = None
        self.last_result = None
        if self.controls is not None:
            self.controls.reset(False)
        return m


# ---------------------------------------------------------------------- offline
class Recorder:
    """A sink that keeps every step's result for the writers and metrics of an offline run."""

    def __init__(self):
        self.index: List[int] = []
        self.stamps: List[float] = []
        self.T_est: List[np.ndarray] = []
        self.T_gt: List[Optional[np.ndarray]] = []
        self.pose_cov: List[np.ndarray] = []
        self.step_cov, self.error_cov, self.error_transition = [], [], []
        self.velocity: List[np.ndarray] = []
        self.velocity_cov: List[np.ndarray] = []
        self.tracking_ok: List[bool] = []
        self.inlier_ratio: List[float] = []
        self.iterations: List[int] = []
        self.timings: List[Dict[str, float]] = []
        self.depth_checks: List[tuple] = []  # (compared, inside 2 sigma) per fused frame

    def on_step(self, out: Outcome) -> None:
        r, f = out.result, out.frame
        self.index.append(int(f.index))
        self.stamps.append(float(f.stamp))
        self.T_est.append(np.asarray(r.T_w_c, dtype=np.float64))
        self.T_gt.append(None if f.T_w_c_gt is None else np.asarray(f.T_w_c_gt, dtype=np.float64))
        self.pose_cov.append(np.asarray(r.pose_cov, dtype=np.float64))
        self.step_cov.append(np.asarray(r.step_covariance, dtype=np.float64))
        for out_list, M in ((self.error_cov, r.error_cov), (self.error_transition, r.error_transition)):
            out_list.append(np.zeros((12, 12)) if M is None else np.asarray(M, dtype=np.float64))
        self.velocity.append(np.asarray(r.velocity, dtype=np.float64))
        self.velocity_cov.append(np.asarray(r.velocity_cov, dtype=np.float64))
        self.tracking_ok.append(bool(r.tracking_ok))
        self.inlier_ratio.append(float(r.inlier_ratio))
        self.iterations.append(int(r.iterations))
        self.timings.append({k: float(v) for k, v in (r.timings_ms or {}).items()})
        if getattr(r, "depth_check", None) is not None:
            self.depth_checks.append(r.depth_check)

    def __len__(self) -> int:
        return len(self.index)

    def with_gt(self):
        """(indices into the records, estimated poses, ground-truth poses) of the frames with ground truth."""
        sel = [k for k, g in enumerate(self.T_gt) if g is not None]
        if not sel:
            return sel, np.zeros((0, 4, 4)), np.zeros((0, 4, 4))
        return sel, np.stack([self.T_est[k] for k in sel]), np.stack([self.T_gt[k] for k in sel])


@dataclass
class RunStats:
    """Timing of an offline run: ``fps`` counts filter steps only, ``fps_total`` the wall
    clock of the loop from the first step on (loading included, which runs ahead of the
    steps in a background thread; the first frame's loading and the warm-up are set-up)."""

    frames: int = 0
    skipped: List[int] = field(default_factory=list)
    load_s: float = 0.0
    step_s: float = 0.0
    wall_s: float = 0.0
    setup_s: float = 0.0
    warmup_s: float = 0.0
    controls_used: int = 0
    peak_rss_after_setup_mb: float = float("nan")
    load_ms: List[float] = field(default_factory=list)
    step_ms: List[float] = field(default_factory=list)
    #: :meth:`prism_ros.stats.CpuMeter.figures` of the loop (loading and steps, all threads)
    cpu: Dict[str, Optional[float]] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.step_s if self.step_s > 0 else float("nan")

    @property
    def fps_total(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")


def _load(dataset, i: int):
    """(frame or the FrameLoadError, seconds) of ``dataset[i]``."""
    t0 = time.perf_counter()
    try:
        frame = PipelineFrame.from_dataset(dataset[i])
    except FrameLoadError as e:
        frame = e
    return frame, time.perf_counter() - t0


#: How much nicer than the caller's thread the loading thread runs (Linux nice, capped at 19), so it runs
#: in the filter's serial gaps (docs/design.md, "Implementation notes").
LOADER_NICE = 10


def _loader_thread_init() -> None:
    """The loading thread: below the filter's priority (where the OS allows it), and OpenCV
    single-threaded (its worker threads would otherwise compete at full priority; the
    offline run's only OpenCV user is the loader)."""
    lower_priority(LOADER_NICE)  # not Linux / not permitted: loading still works
    import cv2

    cv2.setNumThreads(1)


def prefetched(load: Callable[[int], Any], n: int, ahead: int) -> Iterator[Any]:
    """``load(0) .. load(n - 1)`` in order, computed up to ``ahead`` items in advance by one background thread
    below the caller's priority (:data:`LOADER_NICE`, OpenCV single-threaded); ``ahead`` 0 loads in the
    caller's thread.  The offline runner's frames and the player's messages come through here.
    """
    if ahead <= 0:
        for i in range(n):
            yield load(i)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prism-load", initializer=_loader_thread_init) as ex:
        pending = deque(ex.submit(load, i) for i in range(min(ahead, n)))
        for i in range(n):
            fut = pending.popleft()
            if i + ahead < n:
                pending.append(ex.submit(load, i + ahead))
            yield fut.result()


def _frames(dataset, prefetch: int):
    """(i, frame or FrameLoadError, load seconds) over ``dataset``, loaded ``prefetch`` frames
    ahead (:func:`prefetched`)."""
    for i, (frame, load_s) in enumerate(prefetched(lambda i: _load(dataset, i), len(dataset), prefetch)):
        yield i, frame, load_s


def run_dataset(
    dataset,
    cfg,
    sinks: Sequence[Sink] = (),
    progress: bool = True,
    log: Callable[[str], None] = None,
    controls: Optional[ControlSource] = None,
    dataset_controls: bool = True,
    prefetch: int = 2,
    on_ready: Optional[Callable[["Pipeline"], None]] = None,
):
    """Drive a :class:`Pipeline` over ``dataset``; returns (pipeline, RunStats).

    The filter starts at the first readable frame's ground-truth pose (identity without), kernels compiled off
    the clock.  A dataset with ``control_between`` supplies the controls unless ``controls`` is given or
    ``dataset_controls`` is False.  Frames are loaded ``prefetch`` ahead in a background thread.  ``on_ready``
    is called with the pipeline once it is set up, before its first frame.
    """
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    name = dataset.name
    bar = tqdm(total=len(dataset), unit="frame", desc=name, disable=not progress, file=sys.stderr) if tqdm else None

    def say(msg: str) -> None:
        if log is not None:
            log(msg)
        elif bar is not None and progress:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    if controls is None and dataset_controls and isinstance(dataset, HasControls):
        controls = DatasetControls(dataset)
    pipe: Optional[Pipeline] = None
    rs = RunStats()
    t_loop = time.perf_counter()
    meter = CpuMeter()
    for i, frame, load_s in _frames(dataset, prefetch):
        if isinstance(frame, FrameLoadError):
            rs.skipped.append(i)
            say(f"warning: skipping frame {i}: {frame}")
            bar is not None and bar.update(1)
            continue
        if pipe is None:  # set-up off the clock: the filter at the first ground truth, kernels compiled
            t1 = time.perf_counter()
            pipe = Pipeline(cfg, dataset.camera, frame.T_w_c_gt, controls, sinks)  # (checked rigid)
            rs.warmup_s = float(pipe.filter.warmup())
            rs.setup_s = time.perf_counter() - t1
            rs.peak_rss_after_setup_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
            if on_ready is not None:
                on_ready(pipe)
            t_loop = time.perf_counter()
            meter.reset()
        else:
            rs.load_s += load_s
            rs.load_ms.append(load_s * 1e3)
        out = pipe.process(frame)
        if out.result is None:
            rs.skipped.append(i)
            say(f"warning: skipping frame {i}: {out.skipped}")
        else:
            rs.frames += 1
            rs.step_s += out.step_ms * 1e-3
            rs.step_ms.append(out.step_ms)
            rs.controls_used += out.control is not None
            if not out.result.tracking_ok:
                say(
                    f"warning: tracking lost at frame {frame.index} ({out.result.status}, "
                    f"inlier ratio {out.result.inlier_ratio:.2f})"
                )
        if bar is not None:
            bar.update(1)
            if rs.frames and rs.frames % 10 == 0:
                bar.set_postfix(fps=f"{rs.fps:.1f}")
    rs.wall_s = time.perf_counter() - t_loop
    rs.cpu = meter.figures(rs.frames)
    if bar is not None:
        bar.close()
    if pipe is None:
        raise RuntimeError(f"{name}: no readable frame out of {len(dataset)}")
    return pipe, rs


def apply_dataset_hints(cfg, dataset, user_set: Sequence[str] = ()):
    """(cfg, applied): the dataset's ``config_hints`` applied to the parameters the user did not
    set (``user_set``: their names)."""
    hints = dict(dataset.config_hints) if isinstance(dataset, HasConfigHints) else {}
    hints = {k: v for k, v in hints.items() if k not in set(user_set) and getattr(cfg, k) != v}
    return (cfg.replace(**hints) if hints else cfg), hints
