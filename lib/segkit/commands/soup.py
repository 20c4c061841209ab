#!/usr/bin/env python
"""Average several fine-tuning runs of one network into one model (a uniform "model soup").

Each RUN_DIR is a --run-dir of bin/train_person_unet.py (its state.json and
checkpoints/best.keras are read). The runs must share the network and the pretrained start
(e.g. --encoder selfie runs with other learning rates, sizes or schedules); the averaged
weights are scored on the validation data and exported like a trained model (model.tflite,
model.keras, saved_model/, zoo.yaml, metrics.json naming every ingredient).

Example:
  segkit soup runs/a runs/b runs/c --val-coco-root ../shared/data/coco \\
      --output model_zoo/person_selfie_coco
  (bin/soup_models.py is the same command, with the same options)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    from segkit import cli

    p = cli.ArgumentParser(prog=cli.prog("soup_models.py"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run folders (two or more)")
    p.add_argument("--output", required=True, metavar="DIR", help="export folder, model_zoo/NAME")
    p.add_argument("--image-size", type=int, help="input size of the export (default: the first run's)")
    p.add_argument("--val-coco-root", action="append", default=[], metavar="DIR",
                   help="COCO folder with val2017/ and annotations/instances_val2017.json")
    p.add_argument("--val-folder", action="append", default=[], metavar="DIR",
                   help="folder with images/N.jpg and masks/N.png")
    p.add_argument("--no-tflite", action="store_true", help="export Keras/SavedModel only")
    cli.add_verbose_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from segkit import cli
    from segkit.train import coco_paths
    from segkit.train.soup import soup_runs

    try:
        val_coco = [coco_paths(r, "val2017") for r in args.val_coco_root]
        metrics = soup_runs(args.runs, Path(args.output), image_size=args.image_size,
                            val_coco=val_coco, val_folders=args.val_folder,
                            tflite=not args.no_tflite)
    except (ValueError, OSError) as e:
        cli.error(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return 1
    iou = metrics.get("best_iou")
    print(f"soup of {len(args.runs)} runs ({metrics['encoder']}, {metrics['image_size']}px)"
          f"{f': val_iou {iou:.3f}' if iou is not None else ''} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
