"""TFLite person (and other semantic) models, run with LiteRT: no TensorFlow import at all.

Conventions: input float32 [1,S,S,3] RGB, normalised per ``normalize``; output [1,S,S,C]
probabilities (C=1: sigmoid foreground; C=len(classes)+1: softmax with background first).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Sequence

import cv2
import numpy as np

from segkit.errors import SegkitError
from segkit.labels import COCO_CATEGORIES
from segkit.models.base import NORMALIZERS, Segmenter
from segkit.models.blob_filter import BlobFilter, keep_scored
from segkit.segmentation import Segmentation

#: How images are brought to the network's input size (zoo entry key ``resize``). ``area``
#: (averaging, the default for models from elsewhere) suits MediaPipe's selfie model best;
#: ``linear`` is what training here does (tf.image.resize), so models exported by segkit
#: say so: on COCO val2017 the fine-tuned person model scores 0.618 with it against 0.614 with
#: area, and linear costs a fifth of area's 1.4 ms per 640x480 photo.
RESIZE_MODES = ("area", "linear")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line, which it
    writes straight to file descriptor 2 (no log level switches it off) and which would
    interleave with our own one-line messages. Load errors still surface as exceptions.

    Only on the main thread: the redirect is process-wide, so while another thread holds it the
    main thread's error lines vanish, and two threads saving and restoring fd 2 at once can
    leave it pointing at /dev/null for good (a folder run's decode threads make their own
    interpreters: ``prepare``). LiteRT prints the line once per process, for the first
    interpreter, which the main thread makes when it loads the model."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (e.g. captured): nothing to do
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT missing: TensorFlow's (deprecated) copy still works
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteSegmenter(Segmenter):
    family = "tflite"
    semantic = True

    def __init__(self, path, name: str = "", classes: Sequence[int] = (1,), normalize: str = "unit",
                 num_threads: int | None = None, resize: str = "area", output_pool: int = 1,
                 gate: "TFLiteSegmenter | None" = None, label_names: dict[int, str] | None = None,
                 blob_filter: "BlobFilter | None" = None, gate_confirm: float | None = None):
        super().__init__(name)
        self.gate = gate
        self.blob_filter = blob_filter  # with a gate: which blobs to keep (else keep_confirmed)
        # keep_confirmed: the gate probability a blob must reach somewhere to be kept
        try:
            self.gate_confirm = CONFIRM_THRESHOLD if gate_confirm is None else float(gate_confirm)
        except (TypeError, ValueError):
            self.gate_confirm = float("nan")
        if not 0.0 < self.gate_confirm < 1.0:
            raise SegkitError(f"{path}: gate_confirm {gate_confirm}: a probability between 0 and 1")
        self._local = threading.local()  # prepare's interpreters, one set per decode thread
        # what a copy of this network needs (an interpreter is used by one thread at a time)
        self._args = dict(name=name, classes=classes, normalize=normalize, resize=resize,
                          output_pool=output_pool, label_names=label_names)
        if gate is not None:
            self.max_batch = 8  # batches (evaluate, the API): the gate pipelined behind the main network
        self._pool = None  # the gate's thread, made on first use
        self._input: np.ndarray | None = None  # preprocess's reused input buffer
        if output_pool < 1:
            raise SegkitError(f"{path}: output_pool {output_pool}: a block size of at least 1")
        self.output_pool = int(output_pool)
        if normalize not in NORMALIZERS:
            raise SegkitError(f"{path}: unknown normalize {normalize!r} (one of {', '.join(NORMALIZERS)})")
        if resize not in RESIZE_MODES:
            raise SegkitError(f"{path}: unknown resize {resize!r} (one of {', '.join(RESIZE_MODES)})")
        self.resize = resize
        self.path, self.class_ids = str(path), tuple(int(c) for c in classes)
        self.label_names = label_names if label_names is not None else COCO_CATEGORIES
        self._norm = NORMALIZERS[normalize]
        try:
            # The default XNNPACK delegate must stay on: MediaPipe's custom op
            # Convolution2DTransposeBias only resolves through it.
            with _quiet_native_stderr():
                self._it = _interpreter_class()(model_path=self.path, num_threads=num_threads)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise SegkitError(f"{path}: cannot load TFLite model ({str(e).splitlines()[0]})") from None
        inp, out = self._it.get_input_details()[0], self._it.get_output_details()[0]
        self._in_idx, self._out_idx = inp["index"], out["index"]
        _, self.in_h, self.in_w, self.in_c = (int(v) for v in inp["shape"])
        self._in_dtype = inp["dtype"]
        n_out = int(out["shape"][-1])
        if n_out == len(self.class_ids) + 1:
            self._channels = slice(1, None)  # softmax with background first
        elif n_out == len(self.class_ids):
            self._channels = slice(None)
        else:
            raise SegkitError(f"{path}: model has {n_out} output channels but {len(self.class_ids)} "
                              "classes were declared")

    def preprocess(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The network's input [1,h,w,3] for ``image``; ``out``: a float32 array to fill instead
        of a new one."""
        h, w = image.shape[:2]
        shrink = h > self.in_h and w > self.in_w
        interp = cv2.INTER_AREA if shrink and self.resize == "area" else cv2.INTER_LINEAR
        x = cv2.resize(image, (self.in_w, self.in_h), interpolation=interp)
        if self._in_dtype != np.float32:
            return self._norm(x.astype(np.float32)).astype(self._in_dtype)[None]
        if out is None:
            out = np.empty((1, self.in_h, self.in_w, self.in_c), np.float32)
        np.copyto(out[0], x)
        self._norm(out[0], out=out[0])
        return out

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The networks' probabilities for ``image``, computed on the calling (decode) thread with
        interpreters of its own: in a folder run every decode thread runs the networks too, and
        ``segment`` is left with the cheap part (judging blobs, upsampling). Measured: with the
        networks on the model thread and the gate in one helper thread, a core sat idle 14 % of a
        folder run, the model thread waiting for the gate at the end of every batch."""
        nets = getattr(self._local, "nets", None)
        if nets is None:
            nets = self._local.nets = (self.copy(), self.gate.copy() if self.gate is not None else None)
        main, gate = nets
        probs = main.network_probs(image)
        if gate is None or not (probs >= CONFIRM_THRESHOLD).any():
            return probs, None
        return probs, gate.network_probs(image)

    def copy(self) -> "TFLiteSegmenter":
        """The same network (without its gate) with an interpreter of its own, for another thread."""
        return TFLiteSegmenter(self.path, **self._args)

    def segment(self, images, min_score: float = 0.0, prepared=None) -> list[Segmentation]:
        """``prepared``: for each image, what ``prepare`` returned for it, or None."""
        prepared = list(prepared) if prepared is not None else [None] * len(images)
        if self.gate is None:
            return [self.upsample(ready[0] if ready is not None else self.network_probs(im),
                                  im.shape[0], im.shape[1]) for im, ready in zip(images, prepared)]
        todo = [im for im, ready in zip(images, prepared) if ready is None]
        computed = iter(self._gated_probs(todo) if todo else [])
        results = []
        for image, ready in zip(images, prepared):
            p, gate = ready if ready is not None else next(computed)
            if gate is not None:
                confirm = gate_like(gate if isinstance(gate, np.ndarray) else gate.result(), p)
                p = (keep_scored(p, confirm, self.blob_filter) if self.blob_filter is not None
                     else keep_confirmed(p, confirm, confirm_threshold=self.gate_confirm))
            results.append(self.upsample(p, image.shape[0], image.shape[1]))
        return results

    def _gated_probs(self, images) -> list[tuple[np.ndarray, object]]:
        """(main probabilities, gate probabilities or a Future of them, or None) per image."""
        pool = self._gate_pool()
        if len(images) == 1:
            # One frame (live video): the gate runs beside the main network (LiteRT's invoke
            # releases the GIL), two single-threaded interpreters on two cores at once.
            gate = pool.submit(self.gate.network_probs, images[0])
            return [(self.network_probs(images[0]), gate)]
        # A batch: the gate only matters where the main network found a blob (an image without
        # one is left as it is), so it runs only there, one image behind the main network:
        # person-free photos the main network leaves empty cost one net.
        out = []
        for image in images:
            p = self.network_probs(image)
            found = bool((p >= CONFIRM_THRESHOLD).any())
            out.append((p, pool.submit(self.gate.network_probs, image) if found else None))
        return out

    def _gate_pool(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segkit-gate")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self.gate is not None:
            self.gate.close()

    def network_probs(self, image: np.ndarray) -> np.ndarray:
        """float32 [h,w,C] class probabilities at the network's output resolution, pooled; they
        are brought to the image size before any threshold (``upsample``), so edges fall between
        pixels smoothly.

        ``output_pool`` k > 1 averages each k x k block of the output: a last layer that is a
        stride-k transposed convolution (the selfie network's) paints every block from one feature
        vector with k² different kernel taps, which shows as 1-pixel stripes along edges and in
        doubtful regions (a comb once upsampled). The block mean removes that pattern and keeps
        the network's real resolution (its stride)."""
        # One reused input buffer: fresh ~1 MB float arrays are page-faulted in on every call,
        # which made preprocessing cost 1-2 ms a frame instead of 0.2 (set_tensor copies it).
        if self._input is None and self._in_dtype == np.float32:
            self._input = np.empty((1, self.in_h, self.in_w, self.in_c), np.float32)
        self._it.set_tensor(self._in_idx, self.preprocess(image, out=self._input))
        self._it.invoke()
        probs = np.ascontiguousarray(self._it.get_tensor(self._out_idx)[0][..., self._channels],
                                     np.float32)
        k = self.output_pool
        if k > 1 and probs.shape[0] % k == 0 and probs.shape[1] % k == 0:
            probs = cv2.resize(probs, (probs.shape[1] // k, probs.shape[0] // k),
                               interpolation=cv2.INTER_AREA).reshape(
                probs.shape[0] // k, probs.shape[1] // k, -1)
        return probs

    def upsample(self, probs: np.ndarray, height: int, width: int) -> Segmentation:
        full = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
        if full.ndim == 2:
            full = full[..., None]
        return Segmentation(height, width, probs=full, prob_class_ids=self.class_ids,
                            label_names=self.label_names)


CONFIRM_THRESHOLD = 0.5  # what a blob is, for the main network and for its gate


def gate_like(gate: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The gate's probabilities at the main network's output resolution, where blobs are judged:
    20x cheaper than at 640x480, same blobs."""
    return cv2.resize(gate, (probs.shape[1], probs.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(probs.shape)


def keep_confirmed(probs: np.ndarray, confirm: np.ndarray, threshold: float = CONFIRM_THRESHOLD,
                   confirm_threshold: float | None = None) -> np.ndarray:
    """``probs`` [H,W,C] with every blob (8-connected, probability >= ``threshold``) set to 0
    where the ``confirm`` model's probability stays below ``confirm_threshold`` (default:
    ``threshold``; the zoo key ``gate_confirm``) on all of the blob's pixels.

    Why (issue #15): the bundled person model outlines people well but also paints person-free
    scenes (9 % of their pixels); a second network fine-tuned with person-free photos finds far
    fewer false blobs but draws people smaller. Keeping the first model's blobs that the second
    one confirms keeps the good outlines and drops most unconfirmed blobs."""
    out = probs.copy()
    for c in range(probs.shape[-1]):
        mask = (probs[..., c] >= threshold).astype(np.uint8)
        n, labels = cv2.connectedComponents(mask, connectivity=8)
        if n <= 1:
            continue
        sure = confirm[..., c] >= (threshold if confirm_threshold is None else confirm_threshold)
        hit = np.bincount(labels.ravel(), weights=sure.ravel(), minlength=n)
        drop = hit == 0
        drop[0] = False
        if drop.any():
            out[..., c][drop[labels]] = 0.0
    return out
