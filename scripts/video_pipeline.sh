#!/usr/bin/env bash
# video -> frames -> person cut-outs -> collage GIF and MP4 (original | mask | cut-out).
#   scripts/video_pipeline.sh VIDEO OUTDIR
# Knobs (environment): PYTHON (default: the project's .venv/bin/python, else python3), EVERY (4), MAX_FRAMES (30), BACKGROUND (white;
# or transparent, a colour, blur), MODEL_ARGS (e.g. "--model-path my.tflite"), PER_TRACK (1: track the
# objects and also write OUTDIR/tracks/<class>_<id>.mp4, one cut-out clip per object on BACKGROUND).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 VIDEO OUTDIR" >&2
    exit 2
fi
video=$1
out=$2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"
# the project's interpreter, so the script works without an activated venv
if [ -z "${PYTHON:-}" ] && [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=${PYTHON:-python3}; fi

"$py" "$bin/video_to_frames.py" -i "$video" -o "$out/frames" --overwrite --quiet \
    --every "${EVERY:-4}" --max-frames "${MAX_FRAMES:-30}"
track=()
if [ -n "${PER_TRACK:-}" ] && [ "${PER_TRACK}" != 0 ]; then
    track=(--track --per-track "$out/tracks")
fi
# shellcheck disable=SC2086  # MODEL_ARGS is a list of options
"$py" "$bin/segment_folder.py" -i "$out/frames" -o "$out/segmented" --overwrite --quiet \
    --background "${BACKGROUND:-white}" --save-masks ${MODEL_ARGS:-} ${track[@]+"${track[@]}"}
for ext in gif mp4; do
    "$py" "$bin/frames_to_gif.py" -i "$out/frames" --segmented "$out/segmented" \
        --collage original,mask,cutout -o "$out/collage.$ext"
done
