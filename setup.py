"""Everything is in pyproject.toml; this only adds the bundled models to the wheel.

The models live in model_zoo/ at the top of the checkout (beside downloads and trained models);
the wheel carries the ones that ship with segkit, those with a NOTICE.md (licence and origin),
plus the registry, as package data under segkit/model_zoo/, so an installed segkit runs its
default person model offline.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def bundled_files() -> list[tuple[Path, str]]:
    """(source, path inside the segkit package) of the registry and each shipped model folder."""
    zoo = ROOT / "model_zoo"
    files = [(zoo / "zoo.yaml", "model_zoo/zoo.yaml")]
    for notice in sorted(zoo.glob("*/NOTICE.md")):
        folder = notice.parent
        for f in sorted(folder.iterdir()):
            if f.is_file() and (f.suffix in (".tflite", ".md", ".json") or f.name == "zoo.yaml"):
                files.append((f, f"model_zoo/{folder.name}/{f.name}"))
    return files


class BuildPyWithModels(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads model_zoo/ in the checkout itself
            return
        for src, rel in bundled_files():
            target = Path(self.build_lib) / "segkit" / rel
            self.mkpath(str(target.parent))
            self.copy_file(str(src), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outs = super().get_outputs(include_bytecode)
        return outs + [str(Path(self.build_lib) / "segkit" / rel) for _, rel in bundled_files()]


setup(cmdclass={"build_py": BuildPyWithModels})
