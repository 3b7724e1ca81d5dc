"""The PRISM filter core: numpy + Numba only (no ROS imports; a test enforces it)."""

from .camera import Camera
from .types import Control, StepResult

__all__ = ["Camera", "Control", "StepResult", "PrismFilter"]


def __getattr__(name):  # lazy: importing the package does not compile kernels
    if name == "PrismFilter":
        from .filter import PrismFilter

        return PrismFilter
    raise AttributeError(name)
