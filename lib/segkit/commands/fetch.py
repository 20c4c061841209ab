#!/usr/bin/env python3
"""List the model zoo and download models into it (sha256-checked, installed atomically)."""
from __future__ import annotations

import argparse
import os
import sys

from segkit import cli, zoo
from segkit.errors import UsageError

EPILOG = """examples:
  segkit fetch --list                                      # what the zoo holds and what is installed
  segkit fetch yolov5s_seg_coco                            # download, verify, install
  segkit fetch --all --dir /data/segkit-models             # everything, somewhere else
  (bin/fetch_model.py is the same command, with the same options)

Downloads go to $SEGKIT_MODEL_DIR (default model_zoo/downloads/). Without network, download the
archive elsewhere, put it in that folder under its own name and run this again: it is verified
and installed as if downloaded. sha256 values the registry does not know are recorded in
zoo.lock.yaml there on first download and checked on every later one.

exit codes: 0 done, 1 a download/verification failed, 2 bad arguments (e.g. unknown model)"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("fetch_model.py"), description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="zoo model names to fetch")
    p.add_argument("--list", action="store_true",
                   help="list models: name, family, task, installed?, license, description")
    p.add_argument("--all", action="store_true", help="fetch every model in the zoo")
    p.add_argument("--dir", metavar="DIR",
                   help="install folder (default: $SEGKIT_MODEL_DIR or model_zoo/downloads)")
    p.add_argument("--registry", metavar="YAML", help="registry file (default: model_zoo/zoo.yaml)")
    p.add_argument("--force", action="store_true", help="download and install again even if installed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_verbose_arg(p)
    return p


def _status(spec: zoo.ModelSpec) -> str:
    if spec.bundled and zoo.bundled_path(spec).exists():
        return "bundled"
    return "installed" if zoo.is_installed(spec) else "no"


def list_models(registry: zoo.Registry) -> None:
    rows = [(s.name + (" *" if s.name == registry.default else ""), s.family, s.task, _status(s),
             s.license or "?", s.description) for s in registry]
    header = ("NAME", "FAMILY", "TASK", "INSTALLED", "LICENSE", "DESCRIPTION")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[5])
    print(f"(* default model; downloads go to {zoo.model_dir()})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dir:
        os.environ["SEGKIT_MODEL_DIR"] = args.dir  # zoo.model_dir() reads it on every call
    registry = zoo.load_registry(args.registry)
    if args.list:
        if args.names or args.all:
            raise UsageError("--list takes no model names and no --all")
        list_models(registry)
        return cli.EXIT_OK
    if args.all and args.names:
        raise UsageError("give model names or --all, not both")
    if not (args.all or args.names):
        raise UsageError("name at least one model, or use --all or --list (see --help)")
    specs = list(registry) if args.all else [registry.get(n) for n in args.names]  # unknown -> exit 2
    failed = 0
    for spec in specs:
        was_installed = zoo.is_installed(spec) and not args.force
        try:
            path = zoo.fetch(spec, progress=not args.no_progress, force=args.force)
        except zoo.ZooError as e:
            if len(specs) == 1:
                raise
            cli.error(str(e))  # go on with the others, fail at the end
            failed += 1
            continue
        state = "bundled" if spec.bundled and path == zoo.bundled_path(spec) else (
            "already installed" if was_installed else "installed")
        print(f"{spec.name}: {state} at {path}")
    if failed:
        print(f"{failed} of {len(specs)} models failed", file=sys.stderr)
        return cli.EXIT_FAILED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
