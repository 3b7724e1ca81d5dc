"""The simulator (harness; the product never imports it).

* :mod:`~prism_ros.sim.scene`         exact primitive SDFs, scene packing and their union
* :mod:`~prism_ros.sim.render`        the Numba ray caster of a packed scene
* :mod:`~prism_ros.sim.synthetic`     the synthetic RGB-D sequence (``open_dataset("synthetic")``)
* :mod:`~prism_ros.sim.flight_scene`  the room of a simulated EuRoC flight
* :mod:`~prism_ros.sim.imaging`       the flight cameras' rays and motion blur
* :mod:`~prism_ros.sim.flight`        the simulated EuRoC flight writer
* :mod:`~prism_ros.sim.simulate`      ``prism-ros simulate``
"""
