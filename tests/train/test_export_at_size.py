"""scripts/export_at_size.py: the same selfie-network weights at another input size."""
import subprocess
import sys

import numpy as np


def test_gate_re_exported_at_288_keeps_its_weights(tmp_path, repo):
    from segkit.io.sources import read_image
    from segkit.models.tflite import TFLiteSegmenter

    gate = repo / "model_zoo" / "person_selfie_coco" / "gate.tflite"
    out = subprocess.run([sys.executable, str(repo / "scripts" / "export_at_size.py"), str(gate), "288",
                          str(tmp_path / "g288")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    resized = TFLiteSegmenter(tmp_path / "g288" / "model.tflite", resize="linear", output_pool=2)
    original = TFLiteSegmenter(gate, resize="linear", output_pool=2)
    assert (resized.in_h, resized.in_w, original.in_h) == (288, 288, 256)
    photo = read_image(repo / "images" / "000000519208.jpg")
    a, b = resized.segment_one(photo).foreground(), original.segment_one(photo).foreground()
    assert a.any() and (a & b).sum() / (a | b).sum() > 0.8  # the same person, seen at another scale
