"""The evaluation harness (the product: core, datasets, pipeline, tools, ros, never imports it).

* :mod:`~prism_ros.eval.evaluate`     an offline run against ground truth: metrics.json, groundtruth*.tum, report.png
* :mod:`~prism_ros.eval.metrics`      ATE, RPE, pose / map coverage, resources
* :mod:`~prism_ros.eval.calibration`  pose and velocity covariance calibration per lag
* :mod:`~prism_ros.eval.report`       report.png
* :mod:`~prism_ros.eval.bench`        ``prism-ros bench`` (workers: :mod:`~prism_ros.eval.bench_worker`,
  peers: :mod:`~prism_ros.eval.peers`)
* :mod:`~prism_ros.eval.soak`         ``prism-ros soak``
* :mod:`~prism_ros.eval.stereo_eval`  ``prism-ros stereo-eval``
* :mod:`~prism_ros.eval.imu_check`    IMU pre-integration against a ground-truth state track
"""
