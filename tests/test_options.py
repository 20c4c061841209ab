"""segkit.options: the one mapping of named options to a Filter and sinks, below CLI and server."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from segkit import options
from segkit.errors import UsageError
from segkit.options import Options

REPO = Path(__file__).resolve().parents[1]


def test_with_defaults_takes_the_packaged_values_under_given_ones():
    o = Options.with_defaults(threshold=0.7)
    assert o.threshold == 0.7
    assert o.max_instances == 100 and o.alpha == 0.5  # segkit/defaults.yaml


def test_unknown_option_is_refused_by_name():
    with pytest.raises(UsageError, match="unknown option: colour"):
        Options.with_defaults(colour="red")


@pytest.mark.parametrize("name,value,words", [
    ("threshold", 1.5, "outside 0..1"), ("threshold", math.nan, "outside 0..1"),
    ("threshold", "x", "not a number"), ("max_instances", 0, "1 or more"),
    ("max_instances", -3, "1 or more"), ("max_instances", 2.5, "not a whole number"),
    ("max_pixels", -5, "1 or more"), ("classes", " , ", "empty")])
def test_bad_values_are_refused_with_the_flag_name(name, value, words):
    with pytest.raises(UsageError, match=f"--{name.replace('_', '-')}: .*{words}"):
        options.build_filter(Options(**{name: value}))


def test_filter_from_options():
    f = options.build_filter(Options(classes="person", threshold=0.3, max_instances=4))
    assert (f.classes, f.threshold, f.max_instances) == ({1}, 0.3, 4)


def test_no_library_module_imports_the_argparse_layer():
    """Only commands/ (and cli itself) may import segkit.cli: the server reuses what is below it."""
    offenders = []
    for py in (REPO / "lib" / "segkit").rglob("*.py"):
        if "commands" in py.parts or py.name == "cli.py":
            continue
        text = py.read_text(encoding="utf-8")
        if "from segkit import cli" in text or "import segkit.cli" in text or "from segkit.cli" in text:
            offenders.append(str(py.relative_to(REPO)))
    assert offenders == []


@pytest.mark.parametrize("flag,value", [("--max-instances", "0"), ("--max-instances", "-3"),
                                        ("--max-pixels", "-5"), ("--threshold", "nan")])
def test_cli_refuses_the_same_values_in_one_line(flag, value, tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "bin" / "segment_image.py"), "-i",
                        str(REPO / "images" / "000000519208.jpg"), "-o", str(tmp_path), f"{flag}={value}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr
    assert not any(tmp_path.iterdir())
