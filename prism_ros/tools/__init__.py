"""Offline product tools (no ROS imports): the dataset runner and its outputs (:mod:`.runner`),
trajectory and covariance export (:mod:`.export`), the shared command-line options (:mod:`.args`) and
the generated parameter table (:mod:`.params_table`).
"""
