"""Offline tooling: metrics, exports, reports and the dataset runner (no ROS imports)."""
