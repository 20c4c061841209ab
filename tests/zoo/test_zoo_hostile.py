"""Hostile and broken downloads: crafted archives (link chains, devices, bombs), downloads that
cannot be proven complete, unsafe registry names. Everything is served by the loopback server;
the check is always the same: refused in one line, nothing written outside, nothing left behind.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from fixtures.zoo_env import models, server  # noqa: F401 (pytest fixtures)
from segkit import zoo
from segkit.zoo import archives, store

GRAPH = b"frozen graph bytes " * 50
#: a real TFLite model (MediaPipe's selfie network, bundled with the repository)
TFLITE = REPO / "model_zoo" / "selfie_segmentation" / "selfie_segmentation.tflite"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Tar:
    """A tar archive built member by member, exactly as given (that is the point)."""

    def __init__(self, mode: str = "w:gz"):
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode=mode)

    def file(self, name: str, data: bytes = b"x") -> "Tar":
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self.tf.addfile(info, io.BytesIO(data))
        return self

    def special(self, name: str, kind: bytes, link: str = "") -> "Tar":
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        if kind == tarfile.DIRTYPE:
            info.mode = 0o777
        self.tf.addfile(info)
        return self

    def symlink(self, name: str, target: str) -> "Tar":
        return self.special(name, tarfile.SYMTYPE, target)

    def hardlink(self, name: str, target: str) -> "Tar":
        return self.special(name, tarfile.LNKTYPE, target)

    def dir(self, name: str) -> "Tar":
        return self.special(name, tarfile.DIRTYPE)

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()




def spec_for(name: str, url: str, sha256: str | None, archive: dict | None = None,
             family: str = "od_api_tf1", file: str | None = None) -> zoo.ModelSpec:
    return zoo.ModelSpec(name=name, family=family, task="instance" if family != "tflite" else "semantic",
                         file=file or f"{name}/frozen_inference_graph.pb", source={"url": url},
                         sha256=sha256, labels="coco", extra={"archive": archive} if archive else {})


def assert_left_nothing(spec: zoo.ModelSpec, models: Path) -> None:
    """Not installed, no archive, no temp file, no lock line."""
    assert not zoo.is_installed(spec)
    assert sorted(p.name for p in models.iterdir()) == [], "a failed fetch left files behind"


def refused(spec, match: str, exc=zoo.UnsafeArchiveError) -> str:
    with pytest.raises(exc, match=match) as e:
        zoo.fetch(spec, progress=False)
    assert "\n" not in str(e.value)
    return str(e.value)


# --------------------------------------------------------------------------- links

def cve_2025_4517_archive(name: str, dest_len: int) -> bytes:
    """The archive CPython's test_realpath_limit_attack builds: symlinks whose expansion
    overflows PATH_MAX, so os.path.realpath stops expanding and the filter is fooled; then a
    hard link through them to a file outside, overwritten, and a new file written outside."""
    steps = "abcdefghijklmnop"
    max_path = os.pathconf("/", "PC_PATH_MAX")
    component = "d" * ((max_path - dest_len - 1) // (len(steps) + 1))
    t = Tar()
    t.file(f"{name}/frozen_inference_graph.pb", GRAPH)
    path = ""
    for step in steps:
        t.dir(os.path.join(path, component))
        t.symlink(os.path.join(path, step), component)
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    t.symlink(linkpath, os.path.join(*[".."] * len(steps)))
    t.symlink("escape", os.path.join(linkpath, ".."))
    t.hardlink("flaglink", os.path.join("escape", "flag"))
    t.file("flaglink", b"overwrite")
    t.file("escape/newfile", b"new")
    return t.bytes()


@pytest.mark.parametrize("allow_links", [False, True])
def test_cve_2025_4517_link_chain_is_refused_and_writes_nothing_outside(allow_links, server, models):
    name = f"m_cve_{allow_links}"
    flag = models.parent / "flag"
    flag.write_bytes(b"the original")
    data = cve_2025_4517_archive(name, len(str(models / f".{name}.xxxxxxxx.tmp")))
    spec = spec_for(name, server.put(f"{name}.tar.gz", data), sha(data),
                    archive={"allow_links": True} if allow_links else None)
    refused(spec, r"refusing (symlink|a link chain|a path that resolves|a symlink chain|member name longer)")
    assert flag.read_bytes() == b"the original"
    assert not (models.parent / "newfile").exists()
    assert_left_nothing(spec, models)


def test_simple_link_chain_is_caught_by_our_own_check_not_pythons_filter(server, models, monkeypatch):
    # x -> . ; y -> x/.. : y is the folder above the install. Turn Python's filter off to show
    # that our resolution alone refuses it (Pythons without PEP 706 have no filter).
    name = "m_chain"
    data = (Tar().file(f"{name}/frozen_inference_graph.pb", GRAPH)
            .symlink("x", ".").symlink("y", "x/..").file("y/pwned", b"x").bytes())
    spec = spec_for(name, server.put(f"{name}.tar.gz", data), sha(data), archive={"allow_links": True})
    monkeypatch.delattr(tarfile, "data_filter")
    refused(spec, "refusing a link chain that leaves the model folder")
    assert not (models.parent / "pwned").exists()
    assert_left_nothing(spec, models)


def test_links_are_refused_unless_the_entry_allows_them(server, models):
    name = "m_links"
    data = (Tar().file(f"{name}/real.pb", GRAPH).symlink(f"{name}/frozen_inference_graph.pb", "real.pb")
            .hardlink(f"{name}/copy.pb", f"{name}/real.pb").bytes())
    url = server.put(f"{name}.tar.gz", data)
    msg = refused(spec_for(name, url, sha(data)), "refusing symlink")
    assert "allow_links: true" in msg
    assert_left_nothing(spec_for(name, url, sha(data)), models)
    # an entry that says it needs links gets them, as long as they stay inside
    path = zoo.fetch(spec_for(name, url, sha(data), archive={"allow_links": True}), progress=False)
    assert path.read_bytes() == GRAPH and path.is_symlink()
    assert (path.parent / "copy.pb").read_bytes() == GRAPH


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_and_fifos_are_refused(kind, server, models):
    name = f"m_dev_{kind.decode()}"
    data = Tar().file(f"{name}/frozen_inference_graph.pb", GRAPH).special(f"{name}/dev", kind).bytes()
    spec = spec_for(name, server.put(f"{name}.tar.gz", data), sha(data))
    refused(spec, r"refusing (character device|block device|FIFO)")
    assert_left_nothing(spec, models)


def test_zip_fifo_is_refused(server, models):
    name = "m_zipfifo"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{name}/frozen_inference_graph.pb", GRAPH)
        info = zipfile.ZipInfo(f"{name}/pipe")
        info.external_attr = (0o010644) << 16  # S_IFIFO
        zf.writestr(info, b"")
    data = buf.getvalue()
    spec = spec_for(name, server.put(f"{name}.zip", data), sha(data))
    refused(spec, "refusing special file")
    assert_left_nothing(spec, models)


# --------------------------------------------------------------------------- caps

def test_member_count_and_unpacked_size_are_capped(server, models):
    name = "m_caps"
    t = Tar().file(f"{name}/frozen_inference_graph.pb", GRAPH)
    for i in range(20):
        t.file(f"{name}/f{i}", b"\0" * 100_000)  # 2 MB unpacked, a few KB packed
    data = t.bytes()
    url = server.put(f"{name}.tar.gz", data)
    assert len(data) < 50_000
    refused(spec_for(name, url, sha(data), archive={"max_members": 10}), "more than 10 members")
    assert_left_nothing(spec_for(name, url, sha(data)), models)
    refused(spec_for(name, url, sha(data), archive={"max_unpacked_bytes": 1_000_000}),
            "more than 1,000,000 bytes unpacked")
    assert_left_nothing(spec_for(name, url, sha(data)), models)
    # the defaults are far above any real checkpoint: this one installs
    assert zoo.fetch(spec_for(name, url, sha(data)), progress=False).read_bytes() == GRAPH
    assert archives.DEFAULT_MAX_UNPACKED_BYTES >= 8 << 30 and archives.DEFAULT_MAX_MEMBERS >= 1000


def test_bad_archive_options_are_refused_at_registry_load(tmp_path):
    reg = tmp_path / "zoo.yaml"
    reg.write_text(yaml.safe_dump({"models": {"m": {
        "family": "od_api_tf1", "task": "instance", "file": "x.pb", "source": {"url": "http://h/m.tar.gz"},
        "archive": {"allow_links": "yes"}}}}))
    with pytest.raises(zoo.ZooError, match="archive.allow_links must be true or false"):
        zoo.load_registry(reg)


# --------------------------------------------------------------------------- unproven downloads

@pytest.mark.parametrize("fmt", ["tar.gz", "tar", "zip"])
def test_cut_download_without_sha_or_length_is_not_installed_nor_locked(fmt, server, models):
    name = f"m_cut_{fmt.replace('.', '_')}"
    files = {f"{name}/frozen_inference_graph.pb": GRAPH, **{f"{name}/v{i}": os.urandom(3000) for i in range(6)}}
    if fmt == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in files.items():
                zf.writestr(k, v)
        data = buf.getvalue()
        keep = len(data) - 200  # the central directory is lost
    else:
        t = Tar("w:gz" if fmt == "tar.gz" else "w")
        for k, v in files.items():
            t.file(k, v)
        data = t.bytes()
        # .tar: cut right after a member's data, where tarfile sees a shorter, valid archive
        keep = len(data) - 2000 if fmt == "tar.gz" else 3 * 512 + 512 + 3072
    url = server.put(f"{name}.{fmt}", data)
    server.no_length(f"{name}.{fmt}", keep=keep)
    spec = spec_for(name, url, None)
    refused(spec, "incomplete or corrupt archive|incomplete archive", exc=zoo.ZooError)
    assert_left_nothing(spec, models)
    assert not zoo.lock_path().exists()
    # served whole (still without Content-Length) it installs, and only then is it locked
    server.no_length(f"{name}.{fmt}", keep=None)
    assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH
    assert yaml.safe_load(zoo.lock_path().read_text())["models"][name]["sha256"] == sha(data)


def test_single_model_file_without_sha_or_length_must_load(server, models):
    name = "m_tflite"
    data = TFLITE.read_bytes()
    url = server.put(f"{name}.tflite", data)
    server.no_length(f"{name}.tflite", keep=len(data) // 2)
    spec = spec_for(name, url, None, family="tflite", file="person.tflite")
    msg = refused(spec, "does not load as a tflite model", exc=zoo.ZooError)
    assert "not installed" in msg
    assert_left_nothing(spec, models)
    server.no_length(f"{name}.tflite", keep=None)
    assert zoo.fetch(spec, progress=False).read_bytes() == data
    assert yaml.safe_load(zoo.lock_path().read_text())["models"][name]["sha256"] == sha(data)


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize("bad", ["../evil", ".hidden", "a/b", "zoo.lock.yaml", ".."])
def test_registry_names_that_would_leave_the_model_dir_are_refused(bad, tmp_path):
    reg = tmp_path / "zoo.yaml"
    reg.write_text(yaml.safe_dump({"models": {bad: {
        "family": "od_api_tf1", "task": "instance", "file": "x.pb", "source": {"url": "http://h/m.tar.gz"}}}}))
    with pytest.raises(zoo.ZooError, match="cannot be a folder name inside the model dir") as e:
        zoo.load_registry(reg)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("filename", ["zoo.lock.yaml", ".hidden.tar.gz", "m_url"])
def test_url_file_names_that_would_clobber_the_model_dir_are_refused(filename, server, models):
    spec = spec_for("m_url", server.url(f"dl/{filename}"), None)
    refused(spec, "cannot be stored in the model dir", exc=zoo.ZooError)
    assert_left_nothing(spec, models)


# --------------------------------------------------------------------------- full disk

def test_full_disk_during_download_or_extraction_leaves_nothing_and_a_retry_installs(server, tmp_path, monkeypatch):
    from fixtures.small_fs import small_disk

    name = "m_full"
    t = Tar().file(f"{name}/frozen_inference_graph.pb", GRAPH)
    t.file(f"{name}/variables.bin", b"\0" * 900_000)  # packs to a few KB, unpacks to 0.9 MB
    small = t.bytes()
    big = Tar().file(f"{name}/frozen_inference_graph.pb", os.urandom(600_000)).bytes()  # incompressible
    with small_disk(tmp_path / "disk", 512 << 10) as disk:
        models = disk.path / "models"
        models.mkdir()
        monkeypatch.setenv("SEGKIT_MODEL_DIR", str(models))
        spec = spec_for(name, server.put(f"{name}.tar.gz", big), sha(big))
        msg = refused(spec, "no space left on device", exc=zoo.DownloadError)
        assert str(models) in msg
        assert_left_nothing(spec, models)
        spec = spec_for(name, server.put(f"{name}.tar.gz", small), None)
        msg = refused(spec, "no space left on device", exc=zoo.ZooError)  # the download fits, its contents do not
        assert str(models) in msg
        assert_left_nothing(spec, models)
        assert not zoo.lock_path().exists()
        disk.resize(8 << 20)
        assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH
        assert zoo.lock_path().exists()


# --------------------------------------------------------------------------- registry YAML bombs (issue #24)

def _laughs_registry(where: str) -> str:
    """A registry entry whose ``description`` (or an unknown key) is 9 levels of 9 aliases of
    the level below: 600 bytes that expand to 9**10 strings once printed or walked."""
    text = ("models:\n  m:\n    family: tflite\n    task: semantic\n    file: m.tflite\n    bundled: true\n"
            "    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
    for i in range(1, 9):
        text += f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
    return text + f"    {where}: [" + ", ".join(["*l8"] * 9) + "]\n"


@pytest.mark.parametrize("where", ["description", "unknown_key"])
def test_registry_with_nested_aliases_is_refused_in_one_line_with_memory_bounded(where, tmp_path):
    from fixtures.limits import python, run_limited

    reg = tmp_path / "zoo.yaml"
    reg.write_text(_laughs_registry(where))
    assert reg.stat().st_size < 1000
    r = run_limited(python(str(REPO / "bin" / "fetch_model.py"), "--registry", str(reg), "--list"), timeout=60)
    assert r.rc == 1, r.output[-2000:]
    assert r.lines == [f"segkit: error: {reg}: YAML alias at line 8: aliases (*name) are not allowed here "
                       "(nested ones expand exponentially); write the value out"]


def test_registry_aliases_and_oversized_files_are_refused(tmp_path):
    reg = tmp_path / "zoo.yaml"
    reg.write_text("defaults: &d {family: tflite, task: semantic, bundled: true}\n"
                   "models:\n  m: {<<: *d, file: m.tflite}\n")
    with pytest.raises(zoo.ZooError, match="YAML alias at line 3") as e:
        zoo.load_registry(reg)
    assert "\n" not in str(e.value)
    reg.write_text("models: {}\n" + "# padding\n" * 200_000)
    with pytest.raises(zoo.ZooError, match="over 1 MiB of YAML"):
        zoo.load_registry(reg)
    # anchors alone, and the bundled registry, still load
    reg.write_text("models:\n  m: &m {family: tflite, task: semantic, bundled: true, file: m.tflite}\n")
    assert zoo.load_registry(reg).names() == ["m"]
    assert len(zoo.load_registry()) > 5


# --------------------------------------------------------------------------- downloads that never end (issue #24)

@pytest.fixture
def quick_rate(monkeypatch):
    """download_min_rate / download_window shrunk so a stalled server trips in about a second."""
    from segkit.zoo import download

    monkeypatch.setattr(download, "MIN_RATE", 1000, raising=False)
    monkeypatch.setattr(download, "RATE_WINDOW_S", 1.0, raising=False)


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_server_sending_a_byte_at_a_time_is_cut_off_in_one_line(headers, quick_rate, server, models):
    # each read arrives well inside the 60 s per-read timeout, so only the rate ends it
    import time

    name = f"m_slow_{headers}"
    data = Tar().file(f"{name}/frozen_inference_graph.pb", GRAPH).bytes()
    url = server.put(f"{name}.tar.gz", data)
    server.dribble(f"{name}.tar.gz", 0.05, headers=headers)
    spec = spec_for(name, url, sha(data))
    t0 = time.monotonic()
    msg = refused(spec, r"under 1000 bytes/s for 1 s", exc=zoo.DownloadError)
    assert time.monotonic() - t0 < 30  # a bound, not a timing: unguarded, this takes ~20 minutes
    assert msg.startswith(f"cannot download {url}: under 1000 bytes/s for 1 s (") and "download_min_rate" in msg
    assert_left_nothing(spec, models)
    server.dribble(f"{name}.tar.gz", None)
    assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH  # a normal server still gets through


def test_the_rate_minimum_is_stated_once_in_the_defaults():
    from segkit.config import DEFAULTS
    from segkit.zoo import download

    assert download.MIN_RATE == DEFAULTS["download_min_rate"] > 0
    assert download.RATE_WINDOW_S == DEFAULTS["download_window"] > 0


def _gz_tar_of_zeros(name: str, member: str, mib: int) -> bytes:
    """A .tar.gz whose ``member`` is ``mib`` MiB of zeros (honestly declared in its header),
    after a real graph file: ~1 KB per MiB, built without compressing the zeros each time."""
    import struct
    import zlib

    def deflate(data: bytes) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)

    graph = tarfile.TarInfo(f"{name}/frozen_inference_graph.pb")
    graph.size = len(GRAPH)
    head = graph.tobuf() + GRAPH + b"\0" * (-len(GRAPH) % 512)
    info = tarfile.TarInfo(member)
    info.size = mib << 20
    head += info.tobuf()
    zeros = b"\0" * (1 << 20)
    crc = zlib.crc32(head)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    tail = b"\0" * 1024  # end-of-archive marker
    crc = zlib.crc32(tail, crc)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate(head) + deflate(zeros) * mib + last.compress(tail) + last.flush(zlib.Z_FINISH)
    size = len(head) + (mib << 20) + len(tail)
    return b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff" + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_an_archive_unpacking_far_beyond_its_size_is_refused_without_a_cap_in_the_entry(server, models):
    name = "m_gzbomb"
    data = _gz_tar_of_zeros(name, f"{name}/variables.data", 100)  # 100 MiB from ~100 KB
    assert len(data) < 200_000
    url = server.put(f"{name}.tar.gz", data)
    msg = refused(spec_for(name, url, sha(data)), "more than 67,108,864 bytes unpacked")
    assert f"10x the {len(data):,}-byte archive" in msg and "max_unpacked_bytes" in msg
    assert_left_nothing(spec_for(name, url, sha(data)), models)
    # an entry that says how big it unpacks gets exactly that
    refused(spec_for(name, url, sha(data), archive={"max_unpacked_bytes": 50 << 20}),
            "more than 52,428,800 bytes unpacked \\(the entry's archive.max_unpacked_bytes\\)")
    path = zoo.fetch(spec_for(name, url, sha(data), archive={"max_unpacked_bytes": 150 << 20}), progress=False)
    assert path.read_bytes() == GRAPH and (path.parent / "variables.data").stat().st_size == 100 << 20


def test_a_killed_downloads_part_file_is_removed_at_the_next_start(server, models, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from fixtures.limits import REPO as repo

    name = "m_killed"
    data = Tar().file(f"{name}/frozen_inference_graph.pb", GRAPH).bytes()
    url = server.put(f"{name}.tar.gz", data)
    server.dribble(f"{name}.tar.gz", 0.2)  # slow enough to kill it mid-way, fast enough for the rate
    reg = tmp_path / "zoo.yaml"
    reg.write_text(yaml.safe_dump({"models": {name: {
        "family": "od_api_tf1", "task": "instance", "file": f"{name}/frozen_inference_graph.pb",
        "source": {"url": url}, "sha256": sha(data), "labels": "coco"}}}))
    proc = subprocess.Popen([sys.executable, str(repo / "bin" / "fetch_model.py"), "--registry", str(reg),
                             "--dir", str(models), "--no-progress", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            parts = list(models.glob("*.part"))
            if parts:
                break
            time.sleep(0.05)
        assert parts, "the fetch never started its download"
        assert f".{proc.pid}@" in parts[0].name
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert parts[0].exists()  # a killed process cleans nothing
    # a .part of a process still running (this one) and one from another machine are kept
    live = models / f"other.tar.gz.{os.getpid()}@{store._host()}.abcd1234.part"
    remote = models / f"other.tar.gz.{proc.pid}@another-host.abcd1234.part"
    live.write_bytes(b"x")
    remote.write_bytes(b"x")
    server.dribble(f"{name}.tar.gz", None)
    spec = zoo.load_registry(reg).get(name)
    assert zoo.fetch(spec, progress=False).read_bytes() == GRAPH
    assert not parts[0].exists() and live.exists() and remote.exists()
