"""The sparse voxel-block hash shared by the TSDF map and the free-space layer (pure Numba kernels).

Blocks are ``BLOCK`` = 8 voxels a side: voxel (ix, iy, iz) (centre at index times the voxel size) lies in
block (ix >> BLOCK_SHIFT, ...) at position (ix & BLOCK_MASK) + BLOCK ((iy & BLOCK_MASK) + BLOCK (iz &
BLOCK_MASK)).  A layer stores its blocks in dense arrays by *slot* (allocation order) and finds a slot
through an open-addressing, linear-probing table: ``keys`` (int64, -1 empty; :func:`pack_key`, each
coordinate within +-2^20 blocks) and ``vals`` (int32 slot).  The table (:func:`new_table`) is kept at most
half full; slots are never freed one by one (a layer that drops blocks calls :func:`rebuild_hash`).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from numba import njit

__all__ = [
    "BLOCK_SHIFT",
    "BLOCK",
    "BLOCK_MASK",
    "BLOCK3",
    "pack_key",
    "hash_slot",
    "find_block",
    "insert_block",
    "rebuild_hash",
    "voxel_slot",
    "find_blocks",
    "new_table",
]

BLOCK_SHIFT = 3  # a block is 2^3 = 8 voxels along each axis
BLOCK = 1 << BLOCK_SHIFT
BLOCK_MASK = BLOCK - 1  # voxel index within its block: i & BLOCK_MASK; the block: i >> BLOCK_SHIFT
BLOCK3 = BLOCK * BLOCK * BLOCK
_OFF = 1 << 20  # block coordinates are packed as (coordinate + _OFF) in 21 bits each


@njit(cache=True, inline="always")
def pack_key(bx, by, bz):
    """The table key of block (bx, by, bz) (each within +-2^20)."""
    return ((bx + _OFF) << 42) | ((by + _OFF) << 21) | (bz + _OFF)


@njit(cache=True, inline="always")
def hash_slot(bx, by, bz, mask):
    """The first table index probed for block (bx, by, bz); ``mask`` = table length - 1."""
    h = (bx * 73856093) ^ (by * 19349669) ^ (bz * 83492791)
    return h & mask


@njit(cache=True, inline="always")
def find_block(keys, vals, bx, by, bz):
    """Slot of block (bx, by, bz), or -1 when it is not allocated."""
    mask = keys.shape[0] - 1
    key = pack_key(bx, by, bz)
    h = hash_slot(bx, by, bz, mask)
    while True:
        k = keys[h]
        if k == key:
            return vals[h]
        if k == -1:
            return -1
        h = (h + 1) & mask


@njit(cache=True)
def insert_block(keys, vals, bx, by, bz, slot):
    """Map block (bx, by, bz) to ``slot`` (a block already in the table keeps its slot)."""
    mask = keys.shape[0] - 1
    key = pack_key(bx, by, bz)
    h = hash_slot(bx, by, bz, mask)
    while True:
        k = keys[h]
        if k == -1:
            keys[h] = key
            vals[h] = slot
            return
        if k == key:
            return
        h = (h + 1) & mask


@njit(cache=True)
def rebuild_hash(keys, vals, block_xyz, n_blocks):
    """Empty the table and insert blocks ``block_xyz[:n_blocks]`` (N, 3) at slots 0 .. n_blocks - 1."""
    keys[:] = -1
    for s in range(n_blocks):
        insert_block(keys, vals, block_xyz[s, 0], block_xyz[s, 1], block_xyz[s, 2], s)


@njit(cache=True, inline="always")
def voxel_slot(keys, vals, ix, iy, iz):
    """(slot, index in the block) of voxel (ix, iy, iz); slot -1 when its block is not allocated."""
    slot = find_block(keys, vals, ix >> BLOCK_SHIFT, iy >> BLOCK_SHIFT, iz >> BLOCK_SHIFT)
    return slot, (ix & BLOCK_MASK) + BLOCK * ((iy & BLOCK_MASK) + BLOCK * (iz & BLOCK_MASK))


@njit(cache=True, nogil=True)
def find_blocks(keys, vals, cols, bz):
    """Slots (M,) int64 of blocks (cols[i, 0], cols[i, 1], bz) for block columns ``cols`` (M, 2); -1 where absent."""
    out = np.empty(cols.shape[0], np.int64)
    for i in range(cols.shape[0]):
        out[i] = find_block(keys, vals, cols[i, 0], cols[i, 1], bz)
    return out


def new_table(capacity: int) -> Tuple[np.ndarray, np.ndarray]:
    """(keys, vals): an empty table for up to ``capacity`` slots (length: the smallest power of two
    >= 2 capacity + 2)."""
    ht = 1
    while ht < 2 * capacity + 2:
        ht <<= 1
    return np.full(ht, -1, dtype=np.int64), np.zeros(ht, dtype=np.int32)
