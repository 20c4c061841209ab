"""Option defaults: the packaged segkit/defaults.yaml, then --config FILE, then command-line flags.

``DEFAULTS`` (read once, read-only) is the one place code takes a default from; the file is
package data, read with importlib.resources, so an installed wheel has it as the checkout does.
"""
from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

from segkit import safe_yaml
from segkit.errors import UsageError

DEFAULTS_FILE = files("segkit") / "defaults.yaml"


def _parse(text: str, where) -> dict:
    try:
        data = safe_yaml.load(text) or {}  # no aliases (billion laughs)
    except yaml.YAMLError as e:
        raise UsageError(f"{where}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping of option: value")
    return data


DEFAULTS: Mapping = MappingProxyType(_parse(DEFAULTS_FILE.read_text(encoding="utf-8"), DEFAULTS_FILE))


def default_threshold(semantic: bool) -> float:
    """--threshold when it is not given: by the kind of model (defaults.yaml default_threshold).
    Instance scores and probability maps are different quantities: 0.5 on YOLO scores drops
    objects Ultralytics keeps (its default conf is 0.25), while 0.5 is a probability map's
    natural cut."""
    return float(DEFAULTS["default_threshold"]["semantic" if semantic else "instance"])


def threshold_help() -> str:
    """What --help says the default threshold is."""
    return (f"default {default_threshold(False):g} for instance models (scores), "
            f"{default_threshold(True):g} for person / probability-map models")


def load_config(path: str | Path | None = None) -> dict:
    """The packaged defaults, updated by the YAML file ``path`` if given (safe_load only)."""
    cfg = dict(DEFAULTS)
    if path:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{p}: config file not found")
        cfg.update(_parse(p.read_text(encoding="utf-8"), p))
    return cfg


def apply_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Set parser defaults from the YAML files (only for options the parser knows)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    cfg = load_config(known.config)
    dests = {a.dest for a in parser._actions}
    # a section of settings (``track:``) is not its flag's value: --track stays off unless given
    parser.set_defaults(**{k: v for k, v in cfg.items() if k in dests and not isinstance(v, dict)})


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """What every command does with its parser: packaged defaults, then --config, then flags."""
    apply_config(parser, argv)
    return parser.parse_args(argv)
