#!/usr/bin/env python3
"""Re-export a selfie-network TFLite file (the bundled person model, its gate, or any export of
train_person_unet.py --encoder selfie) at another input size: the network is fully
convolutional, so the same weights run at any multiple of 32. Used for the input-size and
gate-size rows of the README's issue #15 table.

    scripts/export_at_size.py model_zoo/person_selfie_coco/gate.tflite 288 runs/gate_288
    # -> runs/gate_288/model.tflite (+ model.keras, saved_model/, zoo.yaml, metrics.json)
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tflite", help="a selfie-network .tflite file (one person channel + background)")
    p.add_argument("size", type=int, help="new input size, a multiple of 32")
    p.add_argument("output", help="export folder to write")
    a = p.parse_args()
    from segkit.train import export, nets

    model = nets.build_selfie(a.size, 2, a.tflite)
    export.export_model(model, a.output, classes=["person"], metrics={"encoder": "selfie", "source": a.tflite},
                        description=f"selfie network from {a.tflite} at {a.size}x{a.size}")
    print(f"{a.output}/model.tflite: {a.tflite} at {a.size}x{a.size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
