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
