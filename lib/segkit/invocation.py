"""How a message names a segkit command: ``bin/fetch_model.py`` in a checkout, where the bin/
scripts are, and ``segkit fetch`` when segkit was installed from the wheel, which has no bin/."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import segkit
from segkit.commands import COMMANDS

#: where the bin/ scripts sit in a checkout (lib/segkit/__init__.py -> ../../bin)
CHECKOUT_BIN = Path(segkit.__file__).resolve().parents[2] / "bin"


@lru_cache(maxsize=None)
def command(sub: str) -> str:
    """'bin/fetch_model.py' (a checkout) or 'segkit fetch' (installed) for the subcommand ``sub``."""
    script = COMMANDS[sub][1]
    return f"bin/{script}" if (CHECKOUT_BIN / script).is_file() else f"segkit {sub}"
