"""The back end: keyframe submaps, a pose graph with verified loop closures, and a global map composed from the
submaps at their optimised poses (docs/backend.md).  Runs beside the filter, off its thread."""
