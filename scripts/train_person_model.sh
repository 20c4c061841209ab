#!/usr/bin/env bash
# The recipe of the bundled default person model (model_zoo/person_selfie_coco): five runs that
# fine-tune MediaPipe's selfie segmentation network on COCO train2017 persons + shared/person,
# validated on COCO val2017, then the uniform average of their best epochs (a model soup).
#   scripts/train_person_model.sh                 # ~25 min on 2 CPU cores
# Knobs (environment): PYTHON (.venv/bin/python if present, else python3), DATA (../shared/data),
# WORK (runs/person_selfie_coco: run folders), OUT (model_zoo/person_selfie_coco).
# Safe to kill: run it again and every run continues from its last checkpoint (--resume).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=${PYTHON:-python3}; fi
data=${DATA:-../shared/data}
work=${WORK:-runs/person_selfie_coco}
out=${OUT:-model_zoo/person_selfie_coco}

# COCO is given twice: its 152 person images then weigh as much as the 290 shared/person photos
# (portrait-like, close to what the selfie model already knows); COCO val2017 is the target.
coco_twice=(--coco-root "$data/coco" --coco-root "$data/coco")
common=(--folder "$data/person" --val-coco-root "$data/coco" --encoder selfie --batch-size 8
        --quiet --no-tflite)

run() {  # NAME ARGS...: one fine-tuning run, resumed if a killed one is there
    local name=$1
    shift
    local resume=()
    [[ -f "$work/$name/state.json" ]] && resume=(--resume)
    "$py" bin/train_person_unet.py "${common[@]}" "$@" --run-dir "$work/$name" \
        --output "$work/$name/export" "${resume[@]}"
}

# Ingredients differ in learning rate, weight averaging, input size and data mix: each run's best
# epoch is a noisy pick on 61 validation images, their average is steadier than any of them.
run lr3e-4        "${coco_twice[@]}" --image-size 256 --lr 3e-4 --epochs 15
run lr3e-4_ema    "${coco_twice[@]}" --image-size 256 --lr 3e-4 --epochs 12 --ema 0.99
run lr1e-4_ema    "${coco_twice[@]}" --image-size 256 --lr 1e-4 --epochs 20 --ema 0.99
run 320px_ema     "${coco_twice[@]}" --image-size 320 --lr 3e-4 --epochs 12 --ema 0.99
run coco_once     --coco-root "$data/coco" --image-size 256 --lr 3e-4 --epochs 12

"$py" bin/soup_models.py "$work"/{lr3e-4,lr3e-4_ema,lr1e-4_ema,320px_ema,coco_once} \
    --image-size 256 --val-coco-root "$data/coco" --output "$out"
