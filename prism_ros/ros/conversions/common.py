"""What the conversion modules share: :class:`InputError` and the bulk-data helpers.

:func:`big_message` and :func:`set_data` fill a message's byte array (images, clouds, grids)
with one copy of a numpy array's bytes, in the ``array.array`` that rclpy serialises.
"""

from __future__ import annotations

import array

import numpy as np

__all__ = ["InputError", "big_message", "set_data"]


class InputError(ValueError):
    """An input message cannot be used (bad encoding, size, step, intrinsics...)."""


def big_message(cls):
    """An empty message of type ``cls`` whose array fields take an ``array.array`` as it is,
    without the copy rclpy makes on assignment unless the message checks its fields
    (releases without ``check_fields`` take it as it is)."""
    try:
        return cls(check_fields=True)
    except (TypeError, AssertionError):  # before check_fields
        return cls()


def set_data(msg, a: np.ndarray, typecode: str = "B") -> None:
    """``msg.data`` (uint8[] or int8[]) from a C-contiguous array's bytes, copied once, into the
    ``array.array`` rclpy serialises (a message from :func:`big_message` keeps it as it is)."""
    data = array.array(typecode)
    data.frombytes(memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
    msg.data = data
