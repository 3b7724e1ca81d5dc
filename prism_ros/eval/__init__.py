"""The evaluation harness: metrics, calibration, reports, benchmarks and their peers, soak, stereo and IMU checks.

The product (core, datasets, pipeline, tools, ros) never imports it.
"""
