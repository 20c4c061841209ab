"""The one real pretrained model here: MediaPipe's selfie segmentation, run through LiteRT."""
import subprocess
import sys

import numpy as np
import pytest

from segkit.models import load_segmenter
from segkit.io.sources import read_image


@pytest.fixture(scope="module")
def selfie():
    return load_segmenter("selfie_segmentation", download=False)


def test_segments_the_person_in_a_shipped_photo(selfie, repo):
    img = read_image(repo / "images" / "000000519208.jpg")  # keeper (right) beside an elephant (left)
    seg = selfie.segment_one(img)
    assert seg.is_semantic and seg.probs.shape == (406, 640, 1) and seg.prob_class_ids == (1,)
    fg = seg.foreground()
    # Known person: his green jumper (lower right); known non-person: the elephant's eye/trunk (left).
    assert fg[300:400, 480:600].mean() > 0.95
    assert fg[100:300, 0:150].mean() < 0.02
    assert 0.2 < fg.mean() < 0.5


def test_result_has_the_original_size_for_odd_shapes(selfie):
    seg = selfie.segment_one(np.zeros((333, 517, 3), np.uint8))
    assert seg.probs.shape == (333, 517, 1) and seg.probs.dtype == np.float32


def test_person_path_does_not_import_tensorflow(repo):
    code = ("import sys; from segkit.models import load_segmenter; import numpy as np; "
            "s = load_segmenter('selfie_segmentation', download=False); s.segment_one(np.zeros((64,64,3),np.uint8)); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert out.stdout.strip() == "False"


def test_resize_mode_follows_the_zoo_entry(repo):
    """``resize: linear`` (what models trained here declare) resizes as training did; the
    default ``area`` averages, which MediaPipe's own model prefers. Different pixels in."""
    from segkit import zoo

    shipped = load_segmenter(zoo.load_registry().default, download=False)
    assert shipped.resize == "linear"
    assert load_segmenter("selfie_segmentation", download=False).resize == "area"
    img = read_image(repo / "images" / "000000519208.jpg")
    as_trained = shipped.preprocess(img)
    shipped.resize = "area"
    averaged = shipped.preprocess(img)
    assert as_trained.shape == averaged.shape == (1, 320, 320, 3)
    assert np.abs(as_trained - averaged).max() > 0.05


def test_output_pool_smooths_the_transposed_conv_stripes(repo):
    """The bundled person model's stride-2 transposed-conv head paints 1-pixel stripes; averaging
    2x2 output blocks before upsampling (its zoo entry says output_pool: 2) removes the comb-like
    edges and specks without moving the mask."""
    from segkit.models.tflite import TFLiteSegmenter

    import cv2

    img = read_image(repo / "images" / "000000519208.jpg")
    path = repo / "model_zoo" / "person_selfie_coco" / "model.tflite"
    raw = TFLiteSegmenter(path, resize="linear").segment_one(img).foreground()
    zoo = load_segmenter("person_selfie_coco", download=False)
    assert zoo.output_pool == 2
    pooled = zoo.segment_one(img).foreground()

    def edge_crossings(m):
        return np.count_nonzero(m[:, 1:] != m[:, :-1]) + np.count_nonzero(m[1:] != m[:-1])

    def blobs(m):
        return cv2.connectedComponents(m.astype(np.uint8), connectivity=8)[0] - 1

    assert edge_crossings(pooled) < 0.75 * edge_crossings(raw)   # a shorter, smoother outline
    assert blobs(pooled) < blobs(raw)
    assert np.mean(pooled != raw) < 0.02                         # the same person


def test_keep_confirmed_drops_only_blobs_the_gate_does_not_touch():
    from segkit.models.tflite import keep_confirmed

    probs = np.zeros((20, 20, 1), np.float32)
    probs[2:10, 2:10] = 0.9          # confirmed by one gate pixel: kept whole, outline included
    probs[14:18, 14:18] = 0.8        # no gate pixel on it: dropped
    probs[0, 19] = 0.3               # below the threshold: not a blob, left alone
    gate = np.zeros_like(probs)
    gate[5, 5] = 0.7
    gate[0, 0] = 0.9                 # gate pixels outside every blob add nothing
    out = keep_confirmed(probs, gate)
    assert np.array_equal(out[2:10, 2:10], probs[2:10, 2:10])
    assert out[14:18, 14:18].max() == 0 and out[0, 19, 0] == pytest.approx(0.3)
    assert out[0, 0, 0] == 0 and probs[14, 14, 0] == pytest.approx(0.8)  # input untouched


def test_gate_confirm_asks_the_gate_for_a_surer_pixel_on_each_blob():
    from segkit.models.tflite import keep_confirmed

    probs = np.zeros((20, 20, 1), np.float32)
    probs[2:10, 2:10] = 0.9          # the gate reaches 0.8 on it
    probs[14:18, 14:18] = 0.8        # the gate reaches only 0.6 on it
    gate = np.zeros_like(probs)
    gate[5, 5] = 0.8
    gate[15, 15] = 0.6
    assert keep_confirmed(probs, gate)[15, 15, 0] == pytest.approx(0.8)   # 0.6 >= 0.5: kept
    out = keep_confirmed(probs, gate, confirm_threshold=0.7)
    assert out[15, 15, 0] == 0 and out[5, 5, 0] == pytest.approx(0.9)    # only the sure one stays
    assert np.array_equal(out[2:10, 2:10], probs[2:10, 2:10])            # kept whole


def test_gate_confirm_comes_from_the_zoo_entry_and_bad_values_name_the_file(repo, tmp_path):
    from segkit.errors import SegkitError

    model = tmp_path / "gated"
    model.mkdir()
    for f in ("model.tflite", "gate.tflite"):
        (model / f).write_bytes((repo / "model_zoo" / "person_selfie_coco" / f).read_bytes())
    zoo = (repo / "model_zoo" / "person_selfie_coco" / "zoo.yaml").read_text()
    zoo = zoo.replace("file: person_selfie_coco/model.tflite", "file: model.tflite")
    zoo = "\n".join(line for line in zoo.splitlines() if "blob_filter_file" not in line)
    (model / "zoo.yaml").write_text(zoo + "\n    gate_confirm: 0.7\n")
    loaded = load_segmenter(None, str(model))
    assert loaded.gate is not None and loaded.blob_filter is None and loaded.gate_confirm == 0.7
    for bad in ("1.5", "high"):
        (model / "zoo.yaml").write_text(zoo + f"\n    gate_confirm: {bad}\n")
        with pytest.raises(SegkitError, match=rf"model\.tflite.*gate_confirm {bad}"):
            load_segmenter(None, str(model))


def test_a_batch_gates_only_where_the_main_network_found_a_blob_with_the_same_result(repo):
    """Folders hand the gated default model batches: the gate runs only on images where the main
    network found something, and every result is what the one-frame path (both nets) gives."""
    from segkit import zoo

    model = load_segmenter(zoo.load_registry().default, download=False)
    assert model.gate is not None and model.max_batch > 1
    photos = [read_image(p) for p in sorted((repo / "images").glob("*.jpg"))]
    blank = np.full((240, 320, 3), 128, np.uint8)  # nothing for the main network to find
    batch = [photos[0], blank, photos[1], blank]
    calls = []
    gate_probs = model.gate.network_probs
    model.gate.network_probs = lambda im: calls.append(im.shape) or gate_probs(im)
    try:
        together = model.segment(batch)
        assert calls == [photos[0].shape, photos[1].shape]  # not on the blank frames
        one_by_one = [model.segment([im])[0] for im in batch]
    finally:
        del model.gate.network_probs
    for a, b in zip(together, one_by_one):
        np.testing.assert_array_equal(a.probs, b.probs)
    assert together[0].foreground().any() and not together[1].foreground().any()


def test_networks_run_ahead_on_other_threads_with_the_same_result(repo):
    """A folder's decode threads run the networks (``prepare``, an interpreter set per thread)
    and ``segment`` only finishes the work: the results are those of the model thread alone,
    the gate still skips frames where the main network found nothing, and a batch may mix
    prepared and unprepared images."""
    from concurrent.futures import ThreadPoolExecutor

    from segkit import zoo

    model = load_segmenter(zoo.load_registry().default, download=False)
    photos = [read_image(p) for p in sorted((repo / "images").glob("*.jpg"))]
    blank = np.full((240, 320, 3), 128, np.uint8)
    batch = [photos[0], blank, photos[1], photos[0]]
    with ThreadPoolExecutor(2) as pool:
        prepared = list(pool.map(model.prepare, batch))
    assert prepared[1][1] is None and all(p[1] is not None for p in prepared[::2])  # gate skipped
    direct = model.segment(batch)
    ahead = model.segment(batch, prepared=prepared)
    mixed = model.segment(batch, prepared=[prepared[0], None, None, prepared[3]])
    for a, b, c in zip(direct, ahead, mixed):
        np.testing.assert_array_equal(a.probs, b.probs)
        np.testing.assert_array_equal(a.probs, c.probs)
    assert direct[0].foreground().any() and not direct[1].foreground().any()

    plain = load_segmenter("selfie_segmentation", download=False)  # no gate: prepare = the network
    np.testing.assert_array_equal(plain.segment([photos[0]], prepared=[plain.prepare(photos[0])])[0].probs,
                                  plain.segment([photos[0]])[0].probs)


def test_interpreters_made_off_the_main_thread_never_hide_its_stderr(repo):
    """A folder's decode threads make interpreters of their own (``prepare``). Silencing
    LiteRT's banner redirects file descriptor 2 for the whole process, so it is done on the main
    thread only: messages the main thread writes meanwhile must reach the terminal, and stderr
    must still work afterwards (CI once lost every error line of a folder run to this)."""
    code = """
import os, threading
from segkit.models import tflite
inside, done = threading.Event(), threading.Event()
def worker():
    with tflite._quiet_native_stderr():
        inside.set()
        done.wait(5)
t = threading.Thread(target=worker)
t.start()
inside.wait(5)
os.write(2, b"while a thread makes an interpreter\\n")
done.set()
t.join()
os.write(2, b"afterwards\\n")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert "while a thread makes an interpreter" in out.stderr and "afterwards" in out.stderr
