"""The HTTP API against the real app on uvicorn (httpx over 127.0.0.1), the real person model."""
from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from fixtures.serving import PHOTO, running


def _image(resp) -> Image.Image:
    return Image.open(io.BytesIO(resp.content))


def test_overlay_from_a_multipart_upload_is_the_photo_size_as_jpeg(serve_url, serve_photo):
    r = httpx.post(f"{serve_url}/v1/segment", files={"file": ("519208.jpg", serve_photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert 'filename="519208_overlay.jpg"' in r.headers["content-disposition"]
    assert _image(r).size == Image.open(PHOTO).size


def test_cutout_options_by_name_from_the_query_or_the_form(serve_url, serve_photo):
    # a raw body, options in the query
    r = httpx.post(f"{serve_url}/v1/segment?format=cutout", content=serve_photo)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    rgba = np.asarray(_image(r))
    assert rgba.shape[2] == 4 and 0 < (rgba[..., 3] > 0).mean() < 0.9  # a person kept, background cleared
    # the same options as form fields (curl -F format=cutout -F background=white)
    r = httpx.post(f"{serve_url}/v1/segment", files={"file": ("p.jpg", serve_photo)},
                   data={"format": "cutout", "background": "white", "ext": "png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    rgb = np.asarray(_image(r))
    assert rgb.shape[2] == 3
    outside = rgba[..., 3] == 0
    assert (rgb[outside] == 255).all()  # the background the form asked for, where the mask is empty


def test_mask_coco_and_yolo_agree_with_the_python_api(serve_url, serve_photo):
    import segkit

    model = segkit.load_model("person_selfie_coco")
    seg = model(segkit.read_image(str(PHOTO)))
    r = httpx.post(f"{serve_url}/v1/segment?format=mask", content=serve_photo)
    mask = np.asarray(_image(r))
    assert r.status_code == 200 and mask.shape == seg.foreground().shape
    assert set(np.unique(mask)) <= {0, 255}
    assert (mask > 0).mean() == pytest.approx(seg.foreground().mean(), abs=0.01)

    r = httpx.post(f"{serve_url}/v1/segment?format=coco&image_id=519208", content=serve_photo)
    results = r.json()
    assert r.headers["content-type"] == "application/json"
    assert results and all(d["image_id"] == 519208 and d["category_id"] == 1 for d in results)
    assert {"bbox", "score", "segmentation"} <= set(results[0])

    r = httpx.post(f"{serve_url}/v1/segment?format=yolo&save_conf=true", content=serve_photo)
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == seg.to_yolo_txt(with_conf=True)


def test_threshold_and_classes_filter_the_results(serve_url, serve_photo):
    strict = httpx.post(f"{serve_url}/v1/segment?format=mask&threshold=0.95", content=serve_photo)
    loose = httpx.post(f"{serve_url}/v1/segment?format=mask&threshold=0.05", content=serve_photo)
    assert (np.asarray(_image(strict)) > 0).sum() < (np.asarray(_image(loose)) > 0).sum()
    r = httpx.post(f"{serve_url}/v1/segment?format=coco&classes=person", content=serve_photo)
    assert r.status_code == 200 and r.json()


def test_models_lists_the_zoo_with_licenses_and_classes(serve_url):
    r = httpx.get(f"{serve_url}/v1/models")
    body = r.json()
    by_name = {m["name"]: m for m in body["models"]}
    assert body["default"] == "person_selfie_coco"
    default = by_name["person_selfie_coco"]
    assert default["installed"] and default["loaded"] and default["classes"] == {"1": "person"}
    assert all("license" in m for m in body["models"])
    assert sum(m["installed"] for m in body["models"]) < len(body["models"])  # not all are downloaded
    # the page starts each model at the threshold the CLI takes for its kind
    assert default["default_threshold"] == 0.5 and by_name["yolov5s_seg_coco"]["default_threshold"] == 0.25


def test_healthz_metrics_docs(serve_url, serve_photo):
    assert httpx.get(f"{serve_url}/healthz").json()["status"] == "ok"
    httpx.post(f"{serve_url}/v1/segment", content=b"")  # one error to count
    text = httpx.get(f"{serve_url}/metrics").text
    assert 'segkit_requests_total{method="POST",route="/v1/segment",status="400"}' in text
    assert 'segkit_request_seconds_bucket{route="/v1/segment",le="+Inf"}' in text
    assert 'segkit_model_images{model="person_selfie_coco"}' in text
    spec = httpx.get(f"{serve_url}/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/v1/segment"]["post"]["parameters"]}
    assert {"model", "classes", "threshold", "max_instances", "min_area", "background", "format"} <= params
    assert "/v1/models" in spec["paths"]
    docs = httpx.get(f"{serve_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    page = httpx.get(f"{serve_url}/")
    assert page.status_code == 200 and "<form" in page.text
    assert httpx.get(f"{serve_url}/static/app.js").status_code == 200


def test_a_token_guards_the_api_but_not_the_page(serve_service, serve_photo):
    from segkit.serve.app import create_app

    with running(create_app(serve_service, token="s3cret")) as url:
        r = httpx.post(f"{url}/v1/segment", content=serve_photo)
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert httpx.get(f"{url}/metrics").status_code == 401
        wrong = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.post(f"{url}/v1/segment", content=serve_photo, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert httpx.get(f"{url}/").status_code == 200 and httpx.get(f"{url}/healthz").status_code == 200


def test_requests_arriving_together_share_a_batch(serve_service, serve_url, serve_photo):
    from concurrent.futures import ThreadPoolExecutor

    batcher = serve_service.load("person_selfie_coco")
    assert batcher.max_batch > 1
    b0, i0 = batcher.batches, batcher.images
    with httpx.Client() as client, ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: client.post(f"{serve_url}/v1/segment?format=mask", content=serve_photo).status_code,
                              range(48)))
    assert codes == [200] * 48
    assert batcher.images - i0 == 48
    assert batcher.batches - b0 < 48  # some requests went through the model together


def test_the_serve_command_is_a_subcommand_and_a_script(repo):
    import subprocess
    import sys

    for cmd in ([sys.executable, "-m", "segkit", "serve", "--help"], [sys.executable, "bin/serve.py", "--help"]):
        r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "--token" in r.stdout and "--host" in r.stdout
    r = subprocess.run([sys.executable, "-m", "segkit", "serve", "--queue", "0"], cwd=repo,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("segkit: error: --queue")


def test_only_loopback_addresses_count_as_private():
    from segkit.serve.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
