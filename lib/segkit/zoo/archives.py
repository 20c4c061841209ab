"""Safe extraction of model archives (tar, zip) into a staging folder.

Every member's final path is worked out here, links included, before anything is written:
Python's own tarfile filter is a second line of defence only (the venv's 3.11.7 predates the
fix for CVE-2025-4517, symlink chains whose resolved path overflows PATH_MAX).
"""
from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

from segkit.zoo.errors import UnsafeArchiveError, ZooError, os_words, reason

if TYPE_CHECKING:
    from segkit.zoo.registry import ModelSpec

#: caps per archive, far above the real checkpoints (the largest Mask R-CNN tarball unpacks to
#: about 0.5 GB in under 20 files; weights barely compress, so model archives unpack to 1-3x
#: their size); an entry sets its own with ``archive: {max_unpacked_bytes, max_members}`` and
#: allows links with ``archive: {allow_links: true}``. Without ``max_unpacked_bytes`` an archive
#: may unpack to DEFAULT_MAX_RATIO x its own size (at least DEFAULT_MIN_UNPACKED_BYTES, at most
#: DEFAULT_MAX_UNPACKED_BYTES): a 3 MB archive that unpacks to 3 GB is a bomb, whatever the ceiling.
DEFAULT_MAX_UNPACKED_BYTES = 16 << 30
DEFAULT_MAX_RATIO = 10
DEFAULT_MIN_UNPACKED_BYTES = 64 << 20
DEFAULT_MAX_MEMBERS = 10_000
_MAX_LINK_HOPS = 40
_MAX_PATH_CHARS = 1024  # far below PATH_MAX (4096): a resolved path longer than this is refused
_READ = 1 << 20


def archive_kind(name: str) -> str:
    """How a downloaded file is installed: "tar", "zip" (extracted) or "file" (copied as is)."""
    lower = name.lower()
    if lower.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    if lower.endswith(".zip"):
        return "zip"
    return "file"


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    allow_links: bool = False
    #: why max_bytes is what it is (said when it is exceeded)
    basis: str = "the entry's archive.max_unpacked_bytes raises the cap"


def archive_limits(spec: ModelSpec | None, packed_bytes: int | None = None) -> ArchiveLimits:
    """The entry's caps; without its own max_unpacked_bytes, the unpacked size is bounded by
    the archive's: ``packed_bytes`` x DEFAULT_MAX_RATIO (within the floor and the ceiling)."""
    opts = (spec.extra.get("archive") if spec is not None else None) or {}
    if "max_unpacked_bytes" in opts:
        max_bytes, basis = int(opts["max_unpacked_bytes"]), "the entry's archive.max_unpacked_bytes"
    elif packed_bytes is not None:
        max_bytes = min(DEFAULT_MAX_UNPACKED_BYTES,
                        max(DEFAULT_MIN_UNPACKED_BYTES, DEFAULT_MAX_RATIO * packed_bytes))
        basis = (f"{DEFAULT_MAX_RATIO}x the {packed_bytes:,}-byte archive: an archive bomb? an entry "
                 "that truly unpacks to more says archive: {max_unpacked_bytes: N}")
    else:
        max_bytes, basis = DEFAULT_MAX_UNPACKED_BYTES, ArchiveLimits.basis
    return ArchiveLimits(max_bytes, int(opts.get("max_members", DEFAULT_MAX_MEMBERS)),
                         bool(opts.get("allow_links", False)), basis)


def check_archive_options(opts: Any) -> str | None:
    """Problem with an entry's ``archive:`` mapping, or None."""
    if not isinstance(opts, dict):
        return "'archive' must be a mapping {allow_links, max_unpacked_bytes, max_members}"
    unknown = set(opts) - {"allow_links", "max_unpacked_bytes", "max_members"}
    if unknown:
        return f"'archive' has unknown keys {sorted(unknown)}"
    if "allow_links" in opts and not isinstance(opts["allow_links"], bool):
        return "archive.allow_links must be true or false"
    for key in ("max_unpacked_bytes", "max_members"):
        if key in opts and not (isinstance(opts[key], int) and not isinstance(opts[key], bool) and opts[key] > 0):
            return f"archive.{key} must be a positive integer"
    return None


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """A member name as path parts inside the target folder; refuses anything that is not."""
    posix = name.replace("\\", "/")
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: refusing member name with a NUL byte {name!r}")
    if posix.startswith("/") or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(f"{archive}: refusing to extract absolute path {name!r}")
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: refusing to extract path with '..' {name!r}")
    if len(posix) > _MAX_PATH_CHARS:
        raise UnsafeArchiveError(f"{archive}: refusing member name longer than {_MAX_PATH_CHARS} characters")
    return parts


class _ArchivePlan:
    """The folder an archive would create, built member by member without touching the disk:
    every path is resolved through the links made by earlier members, as the OS would."""

    def __init__(self, archive: Path, limits: ArchiveLimits):
        self.archive, self.limits = archive, limits
        self.kinds: dict[tuple[str, ...], str] = {(): "dir"}
        self.links: dict[tuple[str, ...], str] = {}
        self.members = 0
        self.bytes = 0

    def refuse(self, problem: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.archive}: refusing {problem}")

    def resolve(self, parts: tuple[str, ...], hops: int = 0) -> tuple[str, ...]:
        """Where ``parts`` ends up with every symlink on the way followed; refuses escapes,
        chains longer than the OS follows, and results longer than _MAX_PATH_CHARS."""
        out: list[str] = []
        for i, part in enumerate(parts):
            if part == "..":
                if not out:
                    raise self.refuse(f"a link chain that leaves the model folder ({'/'.join(parts)!r})")
                out.pop()
                continue
            out.append(part)
            target = self.links.get(tuple(out))
            if target is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise self.refuse(f"a symlink chain over {_MAX_LINK_HOPS} links deep ({'/'.join(parts)!r})")
                if target.startswith("/") or PureWindowsPath(target).drive:
                    raise self.refuse(f"symlink {'/'.join(out)!r} -> {target!r} pointing outside the model folder")
                rest = tuple(p for p in target.replace("\\", "/").split("/") if p not in ("", "."))
                out = list(self.resolve(tuple(out[:-1]) + rest + tuple(parts[i + 1:]), hops))
                break
        if len("/".join(out)) > _MAX_PATH_CHARS:
            raise self.refuse(f"a path that resolves to over {_MAX_PATH_CHARS} characters "
                              f"(a symlink chain, as in CVE-2025-4517)")
        return tuple(out)

    def add(self, name: str, kind: str, size: int = 0, link: str | None = None) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise self.refuse(f"more than {self.limits.max_members:,} members (the entry's "
                              "archive.max_members raises the cap)")
        parts = _member_parts(name, self.archive)
        if not parts:
            if kind == "dir":
                return  # "./" itself
            raise self.refuse(f"member {name!r} without a name")
        if kind in ("symlink", "hardlink") and not self.limits.allow_links:
            raise self.refuse(f"{'symlink' if kind == 'symlink' else 'hard link'} {name!r} -> {link!r} "
                              "(model archives need none; an entry that does says archive: {allow_links: true})")
        # Where the member lands: its folder with links followed, which must stay inside.
        parent = self.resolve(parts[:-1])
        if any(self.kinds.get(parent[:i]) not in (None, "dir") for i in range(1, len(parent) + 1)):
            raise self.refuse(f"member {name!r} inside something that is not a folder")
        final = parent + parts[-1:]
        if final in self.links or (final in self.kinds and (kind != "dir" or self.kinds[final] != "dir")):
            # writing a second time would go through (or replace) what the first one made
            raise self.refuse(f"member {name!r} that repeats an earlier one")
        if kind == "file":
            self.bytes += max(0, size)
            if self.bytes > self.limits.max_bytes:
                raise self.refuse(f"more than {self.limits.max_bytes:,} bytes unpacked ({self.limits.basis})")
        elif kind == "symlink":
            if str(link).startswith("/") or PureWindowsPath(str(link)).drive:
                raise self.refuse(f"symlink {name!r} -> {link!r} pointing outside the model folder")
            self.links[final] = str(link)
            try:
                self.resolve(final)  # where it points now must be inside (later members cannot move it)
            except UnsafeArchiveError:
                del self.links[final]
                raise
        elif kind == "hardlink":
            target = self.resolve(_member_parts(str(link), self.archive))
            if self.kinds.get(target) != "file":
                raise self.refuse(f"hard link {name!r} -> {link!r} that is not an earlier file of the archive")
        for i in range(1, len(final)):
            self.kinds.setdefault(final[:i], "dir")
        self.kinds[final] = {"hardlink": "file"}.get(kind, kind)


def _tar_kind(m: tarfile.TarInfo) -> str | None:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    return None


def _special_name(m: tarfile.TarInfo) -> str:
    return {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
            tarfile.FIFOTYPE: "FIFO"}.get(m.type, f"special file (tar type {m.type!r})")


def safe_extract_tar(archive: Path, dest: Path, limits: ArchiveLimits | None = None) -> None:
    """Extract a tar archive into dest, refusing anything that could land outside it, special
    files, links (unless allowed) and archives over the caps; and check it parses to its end
    (a download cut short at a member boundary still reads as a shorter archive)."""
    limits = limits or ArchiveLimits()
    try:
        with tarfile.open(archive, "r:*") as tf:
            plan = _ArchivePlan(archive, limits)
            members = []
            for m in tf:  # one at a time: the member cap holds before a huge list is built
                kind = _tar_kind(m)
                if kind is None:
                    raise UnsafeArchiveError(f"{archive}: refusing {_special_name(m)} {m.name!r}")
                plan.add(m.name, kind, size=m.size, link=m.linkname if kind in ("symlink", "hardlink") else None)
                members.append(m)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")  # second line of defence
            else:  # pragma: no cover - Python without PEP 706
                tf.extractall(dest, members=members)
            _check_tar_end(tf, archive)
    except getattr(tarfile, "FilterError", ()) as e:  # PEP 706 filter (Python >= 3.10.12)
        raise UnsafeArchiveError(f"{archive}: refusing unsafe member ({reason(e)})") from None
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
        raise _extraction_error(e, archive, dest) from None


def _check_tar_end(tf: tarfile.TarFile, archive: Path) -> None:
    """The end-of-archive marker must follow the last member, and a compressed stream must end
    with its trailer: otherwise the file was cut short (tarfile reads that as the end)."""
    f = tf.fileobj
    f.seek(tf.offset)
    marker = f.read(tarfile.BLOCKSIZE)
    if len(marker) < tarfile.BLOCKSIZE or marker.strip(b"\0"):
        raise ZooError(f"{archive}: incomplete archive (no end-of-archive marker after the last "
                       "member: the download was cut short); it was not installed")
    while f.read(_READ):  # to the end: gzip/bz2/xz check their trailer and raise if it is missing
        pass


def safe_extract_zip(archive: Path, dest: Path, limits: ArchiveLimits | None = None) -> None:
    """Extract a zip archive into dest, refusing absolute paths, '..', links, special files and
    archives over the caps. Every member's CRC is checked as it is extracted."""
    limits = limits or ArchiveLimits()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            plan = _ArchivePlan(archive, limits)
            for info in infos:
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(f"{archive}: refusing symlink {info.filename!r} "
                                             "(zip symlinks are not supported)")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise UnsafeArchiveError(f"{archive}: refusing special file {info.filename!r} "
                                             "(device, FIFO or socket)")
                plan.add(info.filename, "dir" if info.is_dir() else "file", size=info.file_size)
            zf.extractall(dest, members=infos)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _extraction_error(e, archive, dest) from None


def _extraction_error(e: BaseException, archive: Path, dest: Path) -> ZooError:
    """What went wrong while extracting, in one line: the disk (an OSError with an errno names
    the folder) or the archive itself (cut short or corrupt)."""
    if isinstance(e, OSError) and e.errno is not None:
        return ZooError(f"{dest}: cannot extract {archive.name} there ({os_words(e)})")
    return ZooError(f"{archive}: incomplete or corrupt archive ({reason(e)}); it was not installed")
