#!/usr/bin/env python3
"""What a larger input (or a gate network) costs: LiteRT milliseconds per 640x480 frame
(preprocess + invoke + postprocess to full size), 2 threads, for TFLite person model files or zoo
names (person_selfie_coco runs its gate too), measured
interleaved in one run so machine load hits all alike. Prints each model's median and its ratio to
the first.
  bench/bench_input_size.py model_zoo/person_selfie_coco/model.tflite other_320.tflite ...
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from segkit.models.tflite import TFLiteSegmenter  # noqa: E402
from segkit.io.sources import read_image  # noqa: E402


def main() -> None:
    paths = sys.argv[1:] or ["model_zoo/person_selfie_coco/model.tflite"]
    img = read_image(Path(__file__).resolve().parents[1] / "images" / "000000519208.jpg")
    img = np.ascontiguousarray(np.resize(img, (480, 640, 3)))
    from segkit.models import load_segmenter

    models = [TFLiteSegmenter(p, resize="linear", num_threads=2, output_pool=2) if p.endswith(".tflite")
              else load_segmenter(p, download=False) for p in paths]
    times = [[] for _ in models]
    for _ in range(10):
        for m in models:
            m.segment([img])  # warm-up
    for _ in range(60):
        for m, t in zip(models, times):
            t0 = time.perf_counter()
            m.segment([img])
            t.append(time.perf_counter() - t0)
    base = statistics.median(times[0])
    for p, m, t in zip(paths, models, times):
        med = statistics.median(t)
        files = [Path(m.path)] + ([Path(m.gate.path)] if getattr(m, "gate", None) else [])
        print(f"{m.in_w}x{m.in_h}  {1000 * med:6.2f} ms/frame  x{med / base:.2f}  "
              f"{sum(f.stat().st_size for f in files) / 1e6:.2f} MB  {p}")


if __name__ == "__main__":
    main()
