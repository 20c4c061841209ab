#!/usr/bin/env python3
"""Served throughput against a folder run, side by side in one run, on the same photos and model:

  folder   segment_folder's main() on a folder of the photos (overlays written as JPEG files)
  serve    `segkit serve` in its own process on 127.0.0.1; 16 clients (threads, keep-alive
           connections) POST the same photos as raw bodies, format=overlay (JPEG back), each
           client sending its next photo as soon as its answer is read

The two alternate (folder, serve, folder, serve ...) and the best round of each is kept, since
other processes share the CPU. Printed: img/s of both, serve / folder (target >= 90 %), the
latency of the served requests (p50 / p99 over every round) and the model's mean batch size.
Traffic goes only to 127.0.0.1.

Run: .venv/bin/python bench/bench_serve.py [--n 200] [--rounds 3] [--clients 16] [--model NAME]
"""
from __future__ import annotations

import argparse
import http.client
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from _photos import coco_photos, linked_folder  # bench/ is on the path when a bench runs

REPO = Path(__file__).resolve().parents[1]


def start_server(model: str, workers: int, queue: int) -> tuple[subprocess.Popen, str, int]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "segkit", "serve", "--port", "0", "--model", model,
                             "--workers", str(workers), "--queue", str(queue)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        sys.exit(f"the server did not start: {line}{proc.stdout.read()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # never let its pipe fill
    return proc, "127.0.0.1", int(m.group(1))


def post_all(host: str, port: int, bodies: list[bytes], clients: int, query: str) -> tuple[float, list[float]]:
    """Every body POSTed once by ``clients`` keep-alive connections; (wall seconds, latencies)."""
    lock = threading.Lock()
    todo = list(range(len(bodies)))
    latencies: list[float] = []
    errors: list[str] = []

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            t0 = time.perf_counter()
            conn.request("POST", f"/v1/segment?{query}", body=bodies[i], headers={"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            data = resp.read()
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if resp.status != 200 or not data:
                    errors.append(f"{resp.status} {data[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return wall, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="photos (COCO val then train, default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each; the best is kept (default 3)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    ap.add_argument("--model", default=None, help="zoo model (default: the registry's default)")
    ap.add_argument("--workers", type=int, default=2, help="decode / encode threads of both (default 2)")
    args = ap.parse_args()

    from segkit import zoo

    model = args.model or zoo.load_registry().default
    files = coco_photos(args.n)
    bodies = [f.read_bytes() for f in files]
    tmp = Path(tempfile.mkdtemp(prefix="segkit_bench_serve_"))
    src = linked_folder(files, tmp / "in")
    script = importlib.import_module("segkit.commands.folder")
    proc, host, port = start_server(model, args.workers, max(64, args.clients))
    query = "format=overlay&threshold=0.5"

    def folder():
        rc = script.main(["-i", str(src), "-o", str(tmp / "out"), "--overwrite", "--quiet", "--model", model,
                          "--threshold", "0.5", "--workers", str(args.workers)])
        assert rc == 0, rc

    import psutil

    server = psutil.Process(proc.pid)
    load0 = os.getloadavg()[0]
    best = {"folder": 1e9, "serve": 1e9}
    cpu = {"folder": 0.0, "server": 0.0, "clients": 0.0}  # CPU seconds, all rounds
    latencies: list[float] = []
    ratios: list[float] = []  # serve / folder throughput of each round
    try:
        post_all(host, port, bodies[:32], args.clients, query)  # warm-up: connections, first batches
        for _ in range(args.rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            folder()
            folder_s = time.perf_counter() - t0
            best["folder"] = min(best["folder"], folder_s)
            cpu["folder"] += time.process_time() - c0
            s0, c0 = sum(server.cpu_times()[:2]), time.process_time()
            wall, lat = post_all(host, port, bodies, args.clients, query)
            cpu["server"] += sum(server.cpu_times()[:2]) - s0
            cpu["clients"] += time.process_time() - c0
            best["serve"] = min(best["serve"], wall)
            ratios.append(folder_s / wall)
            latencies += lat
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)

    def gauge(name):
        m = re.search(rf"^{name}{{[^}}]*}} ([0-9.e+]+)$", metrics, re.M)
        return float(m.group(1)) if m else float("nan")

    n = len(files)
    lat = sorted(latencies)
    p = lambda q: 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print(f"\n{n} COCO photos, model {model}, {os.cpu_count()} cores, {args.clients} clients on 127.0.0.1, "
          f"overlay JPEG out; best of {args.rounds} alternated rounds (load average before: {load0:.2f})")
    print(f"  folder  {n / best['folder']:7.1f} img/s  ({best['folder']:.2f} s)")
    print(f"  serve   {n / best['serve']:7.1f} img/s  ({best['serve']:.2f} s)")
    print(f"  serve / folder = {100 * best['folder'] / best['serve']:.0f} %   (target >= 90 %)")
    print(f"  each round: {', '.join(f'{100 * r:.0f} %' for r in ratios)}")
    print(f"  latency of {len(lat)} served requests: p50 {p(0.50):.0f} ms, p99 {p(0.99):.0f} ms")
    per = lambda k: 1000 * cpu[k] / (n * args.rounds)  # noqa: E731
    print(f"  CPU per image (load-independent): folder {per('folder'):.1f} ms, server {per('server'):.1f} ms "
          f"(+ clients {per('clients'):.1f} ms)")
    print(f"  mean batch of the model: {gauge('segkit_model_images') / max(1, gauge('segkit_model_batches')):.2f} "
          "images")


if __name__ == "__main__":
    main()
