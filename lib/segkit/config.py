"""YAML defaults (configs/default.yaml, then --config FILE) merged under command-line flags."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from segkit.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
# the checkout's, else the copy an installed wheel carries (setup.py)
DEFAULT_CONFIG = next((p for p in (REPO_ROOT / "configs" / "default.yaml",
                                   Path(__file__).resolve().parent / "configs" / "default.yaml")
                       if p.is_file()), REPO_ROOT / "configs" / "default.yaml")


def load_config(path: str | Path | None = None) -> dict:
    """Defaults from configs/default.yaml, updated by ``path`` if given (safe_load only)."""
    cfg: dict = {}
    for p in [DEFAULT_CONFIG] + ([Path(path)] if path else []):
        if not p.is_file():
            if p == DEFAULT_CONFIG:
                continue  # an installed copy without configs/ still works on built-in defaults
            raise UsageError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UsageError(f"{p}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{p}: expected a mapping of option: value")
        cfg.update(data)
    return cfg


def apply_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Set parser defaults from the YAML files (only for options the parser knows)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    cfg = load_config(known.config)
    dests = {a.dest for a in parser._actions}
    parser.set_defaults(**{k: v for k, v in cfg.items() if k in dests})
