#!/usr/bin/env python
"""Train, evaluate and export the project's own person (or any COCO category) segmentation model.

Examples:
  segkit train --coco-root ../shared/data/coco --val-coco-root ../shared/data/coco \\
      --folder ../shared/data/person --encoder mobilenetv2 --image-size 256 --epochs 40 \\
      --output model_zoo/person_unet_mnv2
  segkit train --folder pets_trimaps --num-classes 3 \\
      --class-names background,pet,border --output model_zoo/pets_trimap   # multi-class masks
  segkit train ... --resume          # continue a killed run from its last checkpoint
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker",
      "index": 0}}' segkit train ... --strategy multiworker   # one such process per worker
  (bin/train_person_unet.py is the same command, with the same options)

The export folder gets model.keras, saved_model/, model.tflite, zoo.yaml, metrics.json and
training_curves.png; checkpoints, state and TensorBoard logs stay in --run-dir (runs/NAME).
Exit codes: 0 done, 1 error, 2 bad arguments, 3 the loss became NaN.
"""
from __future__ import annotations

import argparse
import sys

from segkit import cli


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default (argparse's ArgumentDefaultsHelpFormatter, but
    only where the help does not say it already, and in words for switches and empty lists)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or "required" in text or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)"
        default = action.default
        shown = "off" if default is False else "none" if default in (None, []) else default
        return f"{text} (default: {shown})"


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(
        prog=cli.prog("train_person_unet.py"), description=__doc__.split("\n\n")[0],
        formatter_class=_Formatter,
        epilog="\n".join(__doc__.split("\n\n")[1:]))
    many = dict(action="append", default=[])  # a flag given several times mixes the sources
    d = p.add_argument_group("data (repeat a flag to mix several sources)")
    d.add_argument("--coco-root", **many, metavar="DIR",
                   help="COCO folder with train2017/ and annotations/instances_train2017.json")
    d.add_argument("--coco-split", default="train2017", help="split name under --coco-root")
    d.add_argument("--coco-ann", **many, metavar="JSON", help="COCO instances file (pair with --coco-images)")
    d.add_argument("--coco-images", **many, metavar="DIR", help="image folder of the --coco-ann given at the same place")
    d.add_argument("--folder", **many, metavar="DIR", help="folder with images/N.jpg and masks/N.png")
    d.add_argument("--category", default="person", help="COCO category to segment (binary mask)")
    d.add_argument("--include-negatives", action="store_true", help="also train on COCO images without the category")
    d.add_argument("--small-weight", type=float, metavar="MAX",
                   help="weight the loss of small instances' pixels by 96/sqrt(area), at most MAX "
                        "(e.g. 3: a 32x32 person's pixels count 3x; default: off)")
    d.add_argument("--hard-negatives", type=float, metavar="FRACTION",
                   help="add the mean loss of the FRACTION (e.g. 0.02) hardest background pixels "
                        "of each batch (online hard-negative mining; default: off)")
    d.add_argument("--num-classes", type=int, default=2, help="classes in the masks incl. background "
                   "(>2: folder masks hold the class index, softmax output)")
    d.add_argument("--class-names", help="comma-separated names of the output channels (default: "
                   "the --category name; with --num-classes > 2, background,class1,class2...)")
    d.add_argument("--max-images", type=int, help="use at most N training images (smoke runs; default: all)")
    v = p.add_argument_group("validation (each epoch)")
    v.add_argument("--val-coco-root", **many, metavar="DIR",
                   help="COCO folder with val2017/ and annotations/instances_val2017.json")
    v.add_argument("--val-coco-ann", **many, metavar="JSON",
                   help="validation COCO annotation file (with --val-coco-images; e.g. a held-out "
                        "split, so checkpoints are not picked on the set the model is reported on)")
    v.add_argument("--val-coco-images", **many, metavar="DIR", help="image folder of the --val-coco-ann given at the same place")
    v.add_argument("--val-folder", **many, metavar="DIR", help="validation folder with images/N.jpg and masks/N.png")
    v.add_argument("--val-split", type=float, help="hold out this fraction of the training images "
                   "(default 0.1 when no validation source is given)")
    m = p.add_argument_group("model and schedule")
    m.add_argument("--encoder", choices=("mobilenetv2", "vgg16", "shallow", "selfie"), default="mobilenetv2",
                   help="selfie = MediaPipe's pretrained selfie segmentation network, fine-tuned")
    m.add_argument("--encoder-weights",
                   help="none (train from scratch; the default for mobilenetv2/vgg16/shallow), "
                        "imagenet (only if already in ~/.keras/models), mediapipe (the bundled "
                        "selfie model; the default for --encoder selfie), or a weights file")
    for flag, kind, default, text in (
            ("--image-size", int, 256, "side of the square training input, pixels"),
            ("--epochs", int, 30, "most epochs to train (early stopping may end sooner)"),
            ("--batch-size", int, 8, "images per training step (per replica)"),
            ("--lr", float, 1e-3, "initial Adam learning rate")):
        m.add_argument(flag, type=kind, default=default, help=text)
    m.add_argument("--loss", choices=("jaccard", "ce", "jaccard+ce"), default="jaccard+ce",
                   help="soft Jaccard (IoU) loss, cross-entropy, or their sum")
    m.add_argument("--no-augment", action="store_true",
                   help="no random flip, scale/crop and colour jitter of the training images "
                        "(default: augment)")
    m.add_argument("--patience", type=int, default=8, help="early stopping patience (epochs)")
    m.add_argument("--lr-patience", type=int, default=3, help="ReduceLROnPlateau patience")
    m.add_argument("--ema", type=float, metavar="MOMENTUM",
                   help="validate, checkpoint and export an exponential moving average of the "
                        "weights (e.g. 0.99): smoother than the last step's weights on small data "
                        "(default: off)")
    m.add_argument("--seed", type=int, default=0, help="seed of the data order, augmentation and initial weights")
    m.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                   help="tf.distribute: mirrored = all local GPUs (or the CPU); multiworker = one "
                        "process per worker, cluster in TF_CONFIG, worker 0 writes the outputs; "
                        "--batch-size is per replica")
    o = p.add_argument_group("output")
    o.add_argument("--output", required=True, metavar="DIR", help="export folder, model_zoo/NAME")
    o.add_argument("--run-dir", metavar="DIR", help="checkpoints and logs (default runs/NAME)")
    o.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    o.add_argument("--no-tflite", action="store_true", help="export Keras/SavedModel only")
    o.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    cli.add_verbose_arg(p)
    return p


def main(argv=None) -> int:
    args = parse_args(argv)
    from segkit.train import TrainConfig, TrainingDiverged, outcome, train

    try:  # train() checks the inputs before TensorFlow loads: bad paths fail in a fraction of a second
        cfg = TrainConfig.from_args(args)
        with cli.native_logs_hidden(args.verbose):  # XLA's and the converter's lines ignore TF_CPP_MIN_LOG_LEVEL
            metrics = train(cfg)
    except (TrainingDiverged, ValueError, OSError) as e:
        cli.error(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return e.exit_code if isinstance(e, TrainingDiverged) else 1
    print(outcome(metrics, cfg.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
