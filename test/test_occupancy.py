"""Occupancy grid, free-space layer and the planner query API on the exact synthetic scene.

The map is fused at the ground-truth poses (no tracking) from the noisy synthetic frames;
every expectation is checked against the scene's exact SDF and an independent,
brute-force visibility test of what the camera saw (projecting band points into every
frame), not against the carving code."""

import numpy as np
import pytest
from scipy import ndimage

from prism_ros.core.image import build_frame
from prism_ros.core.occupancy import (
    FreeSpaceLayer,
    OccupancyGridBuilder,
    collision_probability,
    free_space_probability_table,
    occupancy_probability,
)
from prism_ros.core.tsdf import TsdfMap
from prism_ros.sim.synthetic import SyntheticSequence

NOISE = np.array([0.0012, 0.0019, 0.4])  # the synthetic sensor's model (config defaults)
VOX, TAU = 0.02, 0.08
ZMIN, ZMAX = 0.1, 1.5  # band: above the floor (z = 0), below the ceiling (2.5 m)
STRIDE = 4  # 320x240 frames: the 640x480 default of 8


def new_map(**kw):
    m = TsdfMap(VOX, TAU, 0.5, 0.0005, 200, 4096, 0.003, 0.25)
    m.free_space = FreeSpaceLayer(VOX, TAU, ZMIN, ZMAX, stride=STRIDE, **kw)
    return m


def fuse(m, seq, idx):
    frames = []
    for i in idx:
        fr = seq[i]
        f = build_frame(fr.rgb, fr.depth, seq.camera, 2, 0.2, 4.0)
        m.integrate(
            f.depth[0],
            f.rgb,
            f.normals[f.aux_level],
            seq.camera.params,
            fr.T_w_c_gt,
            NOISE,
            edges=f.edges,
            aux_level=f.aux_level,
        )
        frames.append((f.depth[0].copy(), fr.T_w_c_gt))
    return frames


@pytest.fixture(scope="module")
def scene():
    seq = SyntheticSequence(n_frames=40, seed=0)
    m = new_map()
    frames = fuse(m, seq, range(len(seq)))
    b = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    b.update(m)
    return seq, m, frames, b.grid()


def band_sdf(seq, centres, zs):
    """Exact SDF at the band points above every cell centre (len(zs), H, W)."""
    H, W, _ = centres.shape
    pts = np.concatenate([np.concatenate([centres.reshape(-1, 2), np.full((H * W, 1), z)], 1) for z in zs])
    return seq.sdf(pts).reshape(len(zs), H, W)


def column_sdf_min(seq, centres, zs):
    """Exact SDF minimum over the band above every cell centre (H, W)."""
    return band_sdf(seq, centres, zs).min(axis=0)


def seen(seq, frames, centres, zs):
    """Brute force: per band point above each cell, was it in front of a measured depth by more
    than tau ('free'), or within the measured depth + tau ('any', where the TSDF updates)?
    (len(zs), H, W) bools each."""
    cam = seq.camera
    H, W, _ = centres.shape
    free = np.zeros((len(zs), H * W), bool)
    anyv = np.zeros((len(zs), H * W), bool)
    xy = centres.reshape(-1, 2)
    for depth, T in frames:
        R, t = T[:3, :3], T[:3, 3]
        for j, z in enumerate(zs):
            p = (np.concatenate([xy, np.full((len(xy), 1), z)], 1) - t) @ R  # camera frame
            ok = p[:, 2] > 0.05
            u = np.rint(cam.fx * p[:, 0] / np.where(ok, p[:, 2], 1) + cam.cx).astype(int)
            v = np.rint(cam.fy * p[:, 1] / np.where(ok, p[:, 2], 1) + cam.cy).astype(int)
            ok &= (u >= 0) & (v >= 0) & (u < cam.width) & (v < cam.height)
            d = np.zeros(len(xy))
            d[ok] = depth[v[ok], u[ok]]
            ok &= d > 0
            free[j] |= ok & (p[:, 2] < d - TAU)
            anyv[j] |= ok & (p[:, 2] < d + TAU)
    return free.reshape(len(zs), H, W), anyv.reshape(len(zs), H, W)


@pytest.mark.slow
def test_grid_walls_free_and_unknown(scene):
    seq, m, frames, g = scene
    assert g.resolution == VOX
    d = g.data.astype(int)
    assert d.min() >= -1 and d.max() <= 100
    centres = g.cell_centres()
    zs = np.arange(ZMIN + 0.01, ZMAX, 0.04)
    sdf = band_sdf(seq, centres, zs)
    smin = sdf.min(axis=0)
    free_z, any_z = seen(seq, frames, centres, zs)
    free_seen, any_seen = free_z.any(axis=0), any_z.any(axis=0)

    # walls / obstacles: a band point above the cell lies inside a solid by half a cell to
    # tau / 2 and was itself within the measured depth + tau of some frame (observed)
    wall = ((sdf <= -0.5 * VOX) & (sdf >= -0.5 * TAU) & any_z).any(axis=0)
    assert wall.sum() > 500 and np.mean(d[wall] >= 0) >= 0.97
    assert np.mean(d[wall] >= 65) >= 0.97, np.percentile(d[wall], [1, 5, 50])

    # observed free space: seen through, no surface in the band within tau + a cell
    freec = free_seen & (smin > TAU + VOX)
    assert freec.sum() > 5000
    assert np.mean((d[freec] >= 0) & (d[freec] <= 25)) >= 0.95
    # ... and its typical value is the free-space posterior of a voxel seen many times
    table = free_space_probability_table(m)
    assert np.median(d[freec]) <= round(100 * table[2])

    # never seen (not even within tau behind a measured depth), 2 cells from anything seen
    unseen = ~ndimage.binary_dilation(any_seen, iterations=3)
    assert unseen.sum() > 1000
    assert np.mean(d[unseen] == -1) >= 0.97


def test_free_space_posterior_matches_a_map_voxel():
    """A free-space voxel seen n times holds the posterior of a map voxel fused with n clipped
    observations: fuse a plane 6 times and compare the map's own voxels far in front of it."""
    from prism_ros.core.camera import Camera

    cam = Camera(100.0, 100.0, 39.5, 29.5, 80, 60)
    m = TsdfMap(VOX, TAU, 0.5, 0.0005, 200, 64, 0.003, 0.25)
    rgb = np.full((60, 80, 3), 100, np.uint8)
    f = build_frame(rgb, np.full((60, 80), 1.0, np.float32), cam, 1, 0.1, 5.0)
    table = free_space_probability_table(m)
    assert table[0] == pytest.approx(0.5)
    for n in range(1, 7):
        m.integrate(f.depth[0], f.rgb, f.normals[0], cam.params, np.eye(4), NOISE)
        # voxels 0.5 tau .. 1 tau further in front than tau only ever got clipped observations
        pts = np.array([[0.0, 0.0, 1.0 - TAU - 0.04], [0.0, 0.0, 1.0 - TAU - 0.06]])
        mu, sig, cnt = m.query(pts)
        assert np.all(cnt == n)
        assert m.occupancy_probability(pts) == pytest.approx(table[n], rel=1e-4)
    assert table[6] < 0.05 and np.all(np.diff(table[1:20]) <= 1e-12)  # monotone, settles at the floor


def test_wall_seen_fifty_times_is_more_certain():
    """A nearly static camera (speed 0.02): 3 frames vs 50 frames of the same view."""
    seq = SyntheticSequence(n_frames=50, seed=3, speed=0.02)
    few, many = new_map(), new_map()
    frames_few = fuse(few, seq, range(3))
    fuse(many, seq, range(50))
    gf = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    gm = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    gf.update(few)
    gm.update(many)
    Gf, Gm = gf.grid(), gm.grid()
    # the same cells: index the many-frame grid by the few-frame grid's cell centres
    c = Gf.cell_centres()
    r, k = Gm.cell_of(c.reshape(-1, 2))
    inside = (r >= 0) & (k >= 0) & (r < Gm.height) & (k < Gm.width)
    dm = np.full(r.shape, -1)
    dm[inside] = Gm.data[r[inside], k[inside]]
    dm = dm.reshape(Gf.data.shape)
    zs = np.arange(ZMIN + 0.01, ZMAX, 0.04)
    sdf = band_sdf(seq, c, zs)
    smin = sdf.min(axis=0)
    _, any_z = seen(seq, frames_few, c, zs)  # observed by the 3 frames already
    wall = ((sdf <= -0.5 * VOX) & (sdf >= -0.5 * TAU) & any_z).any(axis=0) & (Gf.data >= 0) & (dm >= 0)
    assert wall.sum() > 200
    df, dmv = Gf.data[wall].astype(float), dm[wall].astype(float)
    assert np.mean(df >= 65) >= 0.9 and np.mean(dmv >= 65) >= 0.97
    # near the surface (the first cell inside) the few-frame posterior is visibly less certain
    first = wall & (smin >= -1.5 * VOX)
    assert first.sum() > 100
    f1, m1 = Gf.data[first].astype(float), dm[first].astype(float)
    stats = (f1.mean(), m1.mean(), np.mean(f1 == 100), np.mean(m1 == 100), np.percentile(f1, 5), np.percentile(m1, 5))
    assert m1.mean() > f1.mean() + 1.0, stats
    assert np.mean(m1 == 100) >= np.mean(f1 == 100) + 0.1, stats
    assert np.percentile(m1, 5) > np.percentile(f1, 5), stats
    assert np.mean(m1 >= f1) >= 0.95, stats


def test_point_and_path_queries(scene):
    seq, m, frames, g = scene
    # points: inside the table (top at z = 0.5), free air seen through beside it, outside the room
    pts = np.array([[0.0, 0.0, 0.47], [0.9, 0.0, 0.6], [5.0, 5.0, 1.0]])
    p, observed = occupancy_probability(m, pts)
    assert observed.tolist() == [True, True, False]
    assert p[0] > 0.9 and p[1] < 0.25 and p[2] == 0.5
    mu, sig, cnt = m.query(pts[:1])
    assert p[0] == pytest.approx(float(__import__("scipy.special").special.ndtr(-mu[0] / sig[0])))
    # a path over free floor space vs one through the table, body radius 0.1 m
    free_path = np.array([[0.9, -1.0, 0.6], [0.9, 0.6, 0.6]])
    hit_path = np.array([[-0.8, 0.0, 0.4], [0.8, 0.0, 0.4]])
    sdf_free = seq.sdf(np.linspace(free_path[0], free_path[1], 50))
    assert sdf_free.min() > 0.25  # (really clear of obstacles by more than the radius)
    free_z, _ = seen(seq, frames, np.linspace(free_path[0], free_path[1], 50)[None, :, :2], [0.6])
    assert free_z.all()  # and seen through by the camera
    pf = collision_probability(m, free_path, 0.1)
    ph = collision_probability(m, hit_path, 0.1)
    assert pf <= 0.25 and ph >= 0.9
    per = collision_probability(m, hit_path, 0.1, per_waypoint=True)
    assert per.shape == (2,) and per.max() == pytest.approx(ph)
    assert m.collision_probability(hit_path, 0.1) == pytest.approx(ph)
    with pytest.raises(ValueError, match="radius_m"):
        collision_probability(m, free_path, -1.0)


def test_grid_is_incremental_and_bounded(scene):
    seq, m, frames, g_full = scene
    b = OccupancyGridBuilder(VOX, ZMIN, ZMAX, max_columns=50)
    st = b.update(m)
    assert st["columns_updated"] == 50 and st["columns_pending"] > 0
    while b.pending_columns:
        b.update(m)
    g = b.grid()
    assert np.array_equal(g.data, g_full.data) and g.origin_xy == g_full.origin_xy
    assert b.update(m)["columns_updated"] == 0  # nothing changed
    # a coarser grid is the max over the voxel columns of each cell
    c = OccupancyGridBuilder(VOX, ZMIN, ZMAX, resolution_m=0.1)
    c.update(m)
    gc = c.grid()
    r, k = gc.cell_of(g_full.cell_centres().reshape(-1, 2))
    fine = g_full.data.reshape(-1).astype(int)
    agg = np.full(gc.data.size, -1)
    np.maximum.at(agg, r * gc.width + k, fine)
    assert np.array_equal(agg.reshape(gc.data.shape), gc.data.astype(int))
    # cropping to max_cells
    s = OccupancyGridBuilder(VOX, ZMIN, ZMAX, max_cells=100 * 100)
    s.update(m)
    gs = s.grid(centre_xy=(0.0, 0.0))
    assert gs.data.shape == (100, 100)
    rr, kk = g_full.cell_of(gs.cell_centres().reshape(-1, 2))
    assert np.array_equal(g_full.data[rr, kk].reshape(100, 100), gs.data)


def test_a_snapshot_is_the_map_when_it_was_taken():
    """The node takes the snapshot between filter steps and applies it on another thread while the map is fused:
    the grid from a snapshot is the grid of the map at the snapshot's time, whatever was fused after it; a new
    map (clear) drops the column cache at the next snapshot."""
    seq = SyntheticSequence(n_frames=40, seed=0)
    m = new_map()
    fuse(m, seq, range(20))
    ref = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    ref.update(m)
    g_then = ref.grid()
    b = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    snap = b.snapshot(m)
    fuse(m, seq, range(20, 40))  # fused after the snapshot, before it is applied
    b.apply(snap)
    g = b.grid()
    assert np.array_equal(g.data, g_then.data) and g.origin_xy == g_then.origin_xy
    b.update(m)  # the later frames' columns
    ref.update(m)
    assert np.array_equal(b.grid().data, ref.grid().data)
    assert not np.array_equal(b.grid().data, g_then.data)
    m.clear()
    fuse(m, seq, range(5))
    b.apply(b.snapshot(m))
    fresh = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    fresh.update(m)
    assert np.array_equal(b.grid().data, fresh.grid().data)


def test_empty_map_bad_band_and_resolution():
    m = new_map()
    b = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    b.update(m)
    g = b.grid()
    assert g.data.shape == (1, 1) and g.data[0, 0] == -1
    with pytest.raises(ValueError, match="occupancy_min_z_m = 1.0 m must be smaller"):
        OccupancyGridBuilder(VOX, 1.0, 1.0)
    with pytest.raises(ValueError, match="must be smaller"):
        FreeSpaceLayer(VOX, TAU, 2.0, 1.0)
    with pytest.raises(ValueError, match="finer than a voxel"):
        OccupancyGridBuilder(VOX, ZMIN, ZMAX, resolution_m=0.005)


def test_free_space_memory_is_bounded():
    seq = SyntheticSequence(n_frames=12, seed=1)
    m = new_map(max_bricks=64, initial_bricks=16)
    fuse(m, seq, range(12))
    fs = m.free_space
    assert fs.capacity == 64 and fs.n_bricks <= 64 and fs.evicted > 0
    # the bricks kept are the most recently observed ones
    assert fs.last_seen[: fs.n_bricks].min() >= m._frame_id - 6
