"""Argument helpers shared by the command-line tools (``prism-ros run``, ``bench``, ``soak``).

Exit code 2 for bad arguments or configuration (``parser.error``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Tuple

__all__ = ["nonneg_int", "pos_int", "assignment", "add_config_arguments", "config_from_args", "apply_dataset_hints"]


def _int_at_least(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return v

    parse.__name__ = what.replace("-", "_") + "_int"
    return parse


nonneg_int = _int_at_least(0, "non-negative")
pos_int = _int_at_least(1, "positive")


def assignment(text: str) -> Tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    name, value = text.split("=", 1)
    name = name.strip()
    if not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        parsed = value
    return name, parsed


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """--config YAML and repeatable --set NAME=VALUE."""
    p.add_argument(
        "--config",
        metavar="YAML",
        help="parameters file (ROS 2 '/**: ros__parameters:' layout); default: config/prism.yaml",
    )
    p.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        type=assignment,
        default=[],
        help="override one parameter (repeatable; values are read as YAML), e.g. --set voxel_size_m=0.01",
    )


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """PrismConfig from --config and --set; errors end the program with exit code 2."""
    from prism_ros.config import ConfigError, PrismConfig

    if args.config is not None and not os.path.isfile(args.config):
        parser.error(f"--config: no such file: {args.config}")
    overrides = dict(args.set or [])
    try:
        return PrismConfig.from_yaml(args.config, overrides)
    except ConfigError as e:
        parser.error(f"invalid configuration: {e}")
    except Exception as e:  # unreadable YAML
        parser.error(f"cannot read configuration {args.config}: {e}")


def apply_dataset_hints(cfg, ds, args):
    """Apply the dataset's ``config_hints`` (:class:`~prism_ros.datasets.capabilities.HasConfigHints`)
    to the parameters the user did not set (in --config or --set), saying so on stderr."""
    from prism_ros.config import load_yaml_params
    from prism_ros.datasets.capabilities import HasConfigHints
    from prism_ros.pipeline import apply_dataset_hints as apply

    user = set(dict(args.set or []))
    if args.config is not None:
        user |= set(load_yaml_params(args.config))
    cfg, hints = apply(cfg, ds, user)
    if hints:
        reason = ds.config_hints_reason if isinstance(ds, HasConfigHints) else ""
        print(
            f"prism-ros: {ds.name}: using "
            + ", ".join(f"{k}={v}" for k, v in hints.items())
            + f" ({reason}; override with --set)",
            file=sys.stderr,
        )
    return cfg
