#!/usr/bin/env bash
# The recipe of the bundled default person model (model_zoo/person_selfie_coco): five runs that
# fine-tune MediaPipe's selfie segmentation network on COCO train2017 persons + shared/person,
# validated on COCO val2017, then the uniform average of their best epochs (a model soup), and
# its gate network (four more runs, below).
#   scripts/train_person_model.sh                 # ~60 min on 2 CPU cores
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
