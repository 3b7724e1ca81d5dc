"""The evaluation harness (the product never imports it).

:mod:`~prism_ros.eval.evaluate` (metrics.json, groundtruth*.tum, report.png), :mod:`~prism_ros.eval.metrics`,
:mod:`~prism_ros.eval.calibration`, :mod:`~prism_ros.eval.report`, :mod:`~prism_ros.eval.bench` (workers:
:mod:`~prism_ros.eval.bench_worker`, peers: :mod:`~prism_ros.eval.peers`), :mod:`~prism_ros.eval.soak`,
:mod:`~prism_ros.eval.stereo_eval`, :mod:`~prism_ros.eval.imu_check`.
"""
