"""``python -m prism_ros.ros.player``: the player (:func:`prism_ros.ros.player.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
