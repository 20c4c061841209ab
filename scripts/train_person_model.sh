#!/usr/bin/env bash
# The recipe of the bundled default person model (model_zoo/person_selfie_coco): five runs that
# fine-tune MediaPipe's selfie segmentation network on COCO train2017 persons + shared/person,
# validated on COCO val2017, then the uniform average of their best epochs (a model soup), and
# its gate network (four more runs, below).
#   scripts/train_person_model.sh                     # ~55 min on 2 CPU cores; a new model folder
#   scripts/train_person_model.sh --replace-bundled   # the same, then it becomes the bundled model
# By default the model is written into a new folder, $WORK/person_selfie_coco (use it with
# --model-path); the committed model_zoo/person_selfie_coco is never touched. --replace-bundled
# builds the same folder and, once everything succeeded, swaps it for the bundled one in one
# atomic rename (the bundled folder's NOTICE.md, its licence notice, is kept): the default model
# is never missing a file or its gate mid-run.
# Knobs (environment): PYTHON (.venv/bin/python if present, else python3), DATA (../shared/data),
# WORK (runs/person_selfie_coco: run folders and the new model), OUT ($WORK/person_selfie_coco:
# the new model folder; its name is the model's zoo name).
# Safe to kill: run it again and every run continues from its last checkpoint (--resume).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
replace=0
for arg in "$@"; do
    case $arg in
        --replace-bundled) replace=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "train_person_model.sh: error: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=${PYTHON:-python3}; fi
data=${DATA:-../shared/data}
work=${WORK:-runs/person_selfie_coco}
out=${OUT:-$work/person_selfie_coco}
bundled=model_zoo/person_selfie_coco
if [ "$(realpath -m "$out")" = "$(realpath -m "$bundled")" ]; then
    echo "train_person_model.sh: error: OUT=$out is the bundled model; it is built elsewhere and" \
         "swapped in at the end with --replace-bundled" >&2
    exit 2
fi
if [ "$replace" = 1 ] && [ "$(basename "$out")" != "$(basename "$bundled")" ]; then
    echo "train_person_model.sh: error: --replace-bundled needs OUT named $(basename "$bundled")" \
         "(the folder's name is the model's zoo name), not $(basename "$out")" >&2
    exit 2
fi

# COCO is given twice: its 152 person images then weigh as much as the 290 shared/person photos
# (portrait-like, close to what the selfie model already knows); COCO val2017 is the target.
coco_twice=(--coco-root "$data/coco" --coco-root "$data/coco")
common=(--folder "$data/person" --val-coco-root "$data/coco" --encoder selfie --batch-size 8
        --quiet --no-tflite)

run() {  # NAME ARGS...: one fine-tuning run in $work/NAME, resumed if a killed one is there
    local name=$1
    shift
    local resume=()
    [[ -f "$work/$name/state.json" ]] && resume=(--resume)
    "$py" bin/train_person_unet.py "$@" --run-dir "$work/$name" \
        --output "$work/$name/export" "${resume[@]}"
}

# Ingredients differ in learning rate, weight averaging, input size and data mix: each run's best
# epoch is a noisy pick on 61 validation images, their average is steadier than any of them.
run lr3e-4        "${common[@]}" "${coco_twice[@]}" --image-size 256 --lr 3e-4 --epochs 15
run lr3e-4_ema    "${common[@]}" "${coco_twice[@]}" --image-size 256 --lr 3e-4 --epochs 12 --ema 0.99
run lr1e-4_ema    "${common[@]}" "${coco_twice[@]}" --image-size 256 --lr 1e-4 --epochs 20 --ema 0.99
run 320px_ema     "${common[@]}" "${coco_twice[@]}" --image-size 320 --lr 3e-4 --epochs 12 --ema 0.99
run coco_once     "${common[@]}" --coco-root "$data/coco" --image-size 256 --lr 3e-4 --epochs 12

# exported at 320x320: the same weights find more of the people of 32²-96² pixels (issue #15)
"$py" bin/soup_models.py "$work"/{lr3e-4,lr3e-4_ema,lr1e-4_ema,320px_ema,coco_once} \
    --image-size 320 --val-coco-root "$data/coco" --output "$out"

# The gate (issue #15): the same network trained with COCO's person-free photos, which paints far
# fewer false blobs; a blob of the model's mask is kept only where the gate reaches 0.5 on it.
# Four seeds, each picked on a coco_extra holdout (not on val2017, where the figures are
# reported), averaged and exported at 256x256 (the two networks run side by side per frame).
"$py" scripts/split_coco.py "$data/coco_extra/annotations/instances.json" "$work/coco_extra" --holdout 0.2
for seed in 0 1 2 3; do
    run "gate_s$seed" "${coco_twice[@]}" --folder "$data/person" --include-negatives \
        --val-coco-ann "$work/coco_extra/holdout.json" --val-coco-images "$data/coco_extra/images" \
        --encoder selfie --batch-size 8 --quiet --no-tflite --image-size 320 --lr 3e-4 --epochs 12 \
        --ema 0.99 --seed "$seed"
done
"$py" bin/soup_models.py "$work"/gate_s{0,1,2,3} --image-size 256 --output "$work/gate"
cp "$work/gate/model.tflite" "$out/gate.tflite"
printf '    gate_file: gate.tflite\n    gate_resize: linear\n' >> "$out/zoo.yaml"
"$py" - "$out/metrics.json" "$work/gate/metrics.json" <<'PY'
import json, sys
main, gate = (json.load(open(p)) for p in sys.argv[1:])
main["gate"] = {"file": "gate.tflite", "input_size": [256, 256], "soup": gate["soup"]}
json.dump(main, open(sys.argv[1], "w"), indent=2)
PY

if [ "$replace" = 0 ]; then
    echo "train_person_model.sh: the new model is in $out (segment_image.py --model-path $out);" \
         "--replace-bundled makes it the bundled default"
    exit 0
fi
# One atomic swap: the new folder is staged at the top of the checkout (the same file system as
# model_zoo/, and outside it: the registry reads every model_zoo/*/zoo.yaml, a second
# person_selfie_coco there would be a duplicate) with the bundled NOTICE.md, then the two are
# exchanged in one rename (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames back to back),
# and the old one is deleted.
stage=".$(basename "$bundled").new-$$"
rm -rf "$stage"
cp -a "$out" "$stage"
[ -f "$bundled/NOTICE.md" ] && cp -p "$bundled/NOTICE.md" "$stage/NOTICE.md"
"$py" - "$stage" "$bundled" <<'PY'
import ctypes, os, sys
new, old = (os.fsencode(p) for p in sys.argv[1:])
libc = ctypes.CDLL(None, use_errno=True)
renameat2 = getattr(libc, "renameat2", None)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if renameat2 is None or renameat2(AT_FDCWD, new, AT_FDCWD, old, RENAME_EXCHANGE) != 0:
    aside = new + b".old"  # outside model_zoo/ too
    os.rename(old, aside)  # no exchange here: the shortest gap there can be
    os.rename(new, old)
    os.rename(aside, new)
PY
rm -rf "$stage"  # now the previous bundled model
echo "train_person_model.sh: $bundled replaced by the new model (NOTICE.md kept)"
