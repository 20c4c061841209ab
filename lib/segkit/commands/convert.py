"""Convert a YOLOv5-seg / YOLOv7-seg PyTorch checkpoint to TFLite without PyTorch.

Zoo models convert by themselves on first use; this script converts ahead of time (e.g. a
Docker image build), for other input sizes or formats, or a checkpoint given by path. The
checkpoint is read with a restricted unpickler: a file that names anything but tensors and
YOLO/torch.nn classes is refused, never executed."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from segkit import cli
from segkit.errors import UsageError

EPILOG = """examples:
  segkit convert --model yolov5s_seg_coco                  # into the zoo's cache (what first use does)
  segkit convert --model yolov5s_seg_coco --imgsz 320 --fp16
  segkit convert yolov7-seg.pt --imgsz 320 --out converted/ --savedmodel
  segkit image -i images/000000519208.jpg --model-path converted/yolov7-seg.<sha16>.320.fp32.v1.tflite
  (bin/convert_yolo.py is the same command, with the same options)

Outputs (cached by the checkpoint's sha256, input size and format; written atomically):
<stem>.<sha16>.<imgsz>.<fmt>.v<N>.tflite and .json (class names, nc, nm), and with --savedmodel a
TF SavedModel folder. The weights' license (GPL-3.0 for the YOLO zoo entries) applies to them.

exit codes: 0 converted, 1 unreadable/refused checkpoint, 2 bad arguments"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=cli.prog("convert_yolo.py"), description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a YOLO segmentation .pt file")
    p.add_argument("--model", metavar="NAME", help="a yolo_seg zoo entry instead (fetched if needed)")
    p.add_argument("--imgsz", type=int, default=None, help="input size, a multiple of 32 (default 640)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the zoo entry's install "
                                                "folder, or beside the checkpoint)")
    p.add_argument("--fp16", action="store_true", help="also write an fp16-weight TFLite file "
                   "(outputs within ~5e-3 of fp32)")
    p.add_argument("--int8", action="store_true", help="also write a dynamic-range int8 TFLite file "
                   "(~1.9x faster on CPU, scores within ~0.2: measure its AP before using it)")
    p.add_argument("--savedmodel", action="store_true", help="also export a TF SavedModel")
    cli.add_verbose_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.checkpoint) == bool(args.model):
        raise UsageError("give a checkpoint path or --model NAME (one of them)")
    from segkit.models.yolo_convert import DEFAULT_IMGSZ, convert_checkpoint

    if args.model:
        from segkit import zoo

        spec = zoo.load_registry().get(args.model)
        if spec.family != "yolo_seg":
            raise UsageError(f"model '{spec.name}' is a {spec.family} model, not yolo_seg")
        pt = zoo.resolve(spec)
        out = Path(args.out) if args.out else zoo.install_dir(spec)
        imgsz = args.imgsz or (spec.input_size[0] if spec.input_size else DEFAULT_IMGSZ)
    else:
        pt = Path(args.checkpoint)
        out = Path(args.out) if args.out else pt.parent
        imgsz = args.imgsz or DEFAULT_IMGSZ
    if imgsz <= 0 or imgsz % 32:
        raise UsageError(f"--imgsz {imgsz} must be a positive multiple of 32 (e.g. 320, 480, 640)")
    formats = ("fp32",) + (("fp16",) if args.fp16 else ()) + (("int8",) if args.int8 else ())
    t0 = time.perf_counter()
    written = convert_checkpoint(pt, out, imgsz, formats=formats, savedmodel=args.savedmodel)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    print(f"converted {pt.name} for {imgsz}x{imgsz} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return cli.EXIT_OK
