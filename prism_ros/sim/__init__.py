"""The simulator (harness; the product never imports it).

:mod:`~prism_ros.sim.scene` (exact SDFs), :mod:`~prism_ros.sim.render`, :mod:`~prism_ros.sim.synthetic`
(``open_dataset("synthetic")``), :mod:`~prism_ros.sim.flight_scene`, :mod:`~prism_ros.sim.imaging`,
:mod:`~prism_ros.sim.flight`, :mod:`~prism_ros.sim.simulate` (``prism-ros simulate``).
"""
