#!/usr/bin/env bash
# The README gallery: real outputs of segkit's own commands on the committed sample photos
# (images/, COCO val2017, CC BY 2.0: see images/ATTRIBUTION.md), shrunk to 400 px wide JPEGs.
#   docs/gallery/make_gallery.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=${PYTHON:-python3}; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
photo=images/000000183709.jpg

"$py" bin/segment_image.py -i "$photo" -o "$tmp/overlay.jpg" --quiet
"$py" bin/segment_image.py -i "$photo" -o "$tmp/cutout_white.jpg" --background white --quiet
# a one-frame "video": the collage (original | mask | cut-out) frames_to_gif.py makes of it
mkdir -p "$tmp/frames"
cp "$photo" "$tmp/frames/frame_000000.jpg"
"$py" bin/segment_folder.py -i "$tmp/frames" -o "$tmp/seg" --background white --save-masks --quiet
"$py" bin/frames_to_gif.py -i "$tmp/frames" --segmented "$tmp/seg" --collage original,mask,cutout \
    --resize 400 -o "$tmp/collage.gif" --quiet

"$py" - "$tmp" docs/gallery <<'PY'
import sys
from pathlib import Path
from PIL import Image

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("overlay.jpg", "cutout_white.jpg", "collage.gif"):
    with Image.open(src / name) as im:
        im = im.convert("RGB")
        width = 400 if name != "collage.gif" else im.width
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        out = dst / (Path(name).stem + ".jpg")
        im.save(out, quality=85, optimize=True)
        print(f"{out}: {im.width}x{im.height}, {out.stat().st_size // 1024} KiB")
PY
