"""The ~/map_cloud points kept up to date block by block (prism_ros.core.surface_cloud) on the synthetic room:
always the same points as a full extract_surface of the map at the snapshot's time."""

import numpy as np

from prism_ros.core.surface_cloud import FIELDS, SurfaceCloudBuilder
from test_occupancy import fuse, new_map
from prism_ros.sim.synthetic import SyntheticSequence

MAX_SDF = 0.02


def _same(a, b):
    """The same points with the same fields, in any order."""
    if len(a["xyz"]) != len(b["xyz"]):
        return False
    oa, ob = (np.lexsort(c["xyz"].T) for c in (a, b))
    return all(np.array_equal(a[f][oa], b[f][ob]) for f in FIELDS)


def test_incremental_cloud_is_the_full_extraction_at_the_snapshot():
    seq = SyntheticSequence(n_frames=30, seed=0)
    m = new_map()
    b = SurfaceCloudBuilder(MAX_SDF)
    fuse(m, seq, range(10))
    first = b.snapshot(m)
    assert first.reset and len(first.slots) == m.n_blocks
    b.apply(first)
    assert _same(b.cloud(), m.extract_surface(MAX_SDF))
    fuse(m, seq, range(10, 20))
    n_before = m.n_blocks
    delta = b.snapshot(m)
    assert not delta.reset and 0 < len(delta.slots) < m.n_blocks  # only the blocks fused since
    then = m.extract_surface(MAX_SDF)
    fuse(m, seq, range(20, 30))  # fused after the snapshot, before it is applied
    b.apply(delta)
    assert _same(b.cloud(), then) and m.n_blocks > n_before
    b.apply(b.snapshot(m))
    assert _same(b.cloud(), m.extract_surface(MAX_SDF))
    assert len(b.snapshot(m).slots) == 0  # nothing fused since
    # a cleared map starts again from its own blocks
    m.clear()
    fuse(m, seq, range(3))
    b.apply(b.snapshot(m))
    assert _same(b.cloud(), m.extract_surface(MAX_SDF))
    m.clear()
    b.apply(b.snapshot(m))
    assert len(b.cloud()["xyz"]) == 0
