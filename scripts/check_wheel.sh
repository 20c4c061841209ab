#!/usr/bin/env bash
# Build the wheel, install it in a clean venv and segment a photo with the installed `segkit`
# command: the bundled person model must come from inside the installed package, offline.
#   scripts/check_wheel.sh            (CI runs it)
# Knobs (environment): PYTHON (.venv/bin/python if present, else python3), KEEP=1 keeps the temp
# dir, WHEELHOUSE (~/.cache/segkit/wheelhouse: the dependencies' wheels, kept between runs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=${PYTHON:-python3}; fi
tmp=$(mktemp -d)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)

# the README's packaging promise: an in-place build with the project's own setuptools (>= 77)
"$py" -m pip wheel -q --no-build-isolation --no-deps . -w "$tmp/dist"
wheel=$(ls "$tmp"/dist/segkit-*.whl)
t1=$(date +%s)

# a clean venv; the dependencies come from a wheelhouse kept between runs (filled from the
# index on the first run, or when requirements change), so later runs install without the network
wh=${WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/segkit/wheelhouse}
"$py" -m venv "$tmp/venv"
if ! "$tmp/venv/bin/pip" install -q --no-index --find-links "$wh" "$wheel" 2>/dev/null; then
    echo "wheel check: filling the wheelhouse $wh (first run: downloads every dependency)"
    if "$tmp/venv/bin/pip" wheel -q -w "$wh" "$wheel"; then
        rm -f "$wh"/segkit-*.whl
        "$tmp/venv/bin/pip" install -q --no-index --find-links "$wh" "$wheel"
    else  # the wheelhouse could not be filled: install from the index as any user would
        "$tmp/venv/bin/pip" install -q "$wheel"
    fi
fi
t2=$(date +%s)

# a folder that is not the checkout, no PYTHONPATH, no download dir, and no network: any
# download attempt goes to a closed port and fails.
mkdir -p "$tmp/run"
cp images/000000519208.jpg "$tmp/run/photo.jpg"
cd "$tmp/run"
env -u PYTHONPATH SEGKIT_MODEL_DIR="$tmp/no_downloads" http_proxy=http://127.0.0.1:9 \
    https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
    "$tmp/venv/bin/segkit" image -i photo.jpg
test -s segmented_images/photo.jpg
"$tmp/venv/bin/python" - <<'PY'
from pathlib import Path

import segkit, segkit.zoo as zoo
from PIL import Image
assert "site-packages" in segkit.__file__, segkit.__file__
assert zoo.ZOO_ROOT.is_relative_to(Path(segkit.__file__).parent), zoo.ZOO_ROOT
with Image.open("segmented_images/photo.jpg") as im:
    assert im.format == "JPEG" and im.size == (640, 406), (im.format, im.size)
print(f"wheel check: segkit {segkit.__file__}, models from {zoo.ZOO_ROOT}")
PY
[ ! -e "$tmp/no_downloads" ] || { echo "wheel check: something was downloaded" >&2; exit 1; }
echo "wheel check: ok (build $((t1 - t0)) s, clean venv + install $((t2 - t1)) s, run $(($(date +%s) - t2)) s)"
