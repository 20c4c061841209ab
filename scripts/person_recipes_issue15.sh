#!/usr/bin/env bash
# The fine-tuning recipes tried for issue #15 (README: "Person-free photos and small people"), each
# starting from the committed model, picked on a coco_extra holdout (F and G, session 6, start
# from MediaPipe's weights; F is picked on val2017). None replaced the main network: they lower
# false positives but lose IoU on the images with people. Run D was its gate in sessions 4-5 (with
# the blob filter the last step fits, in session 5); G's recipe, four seeds averaged, is the gate
# since session 6 (scripts/train_person_model.sh).
#   scripts/person_recipes_issue15.sh            # ~15 min per run on 2 quiet CPU cores
# Kill-safe: run it again and each run resumes (--resume).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
data=${DATA:-../shared/data}
work=${WORK:-runs/issue15}
"$py" scripts/split_coco.py "$data/coco_extra/annotations/instances.json" "$work/coco_extra" --holdout 0.2
extra=(--coco-ann "$work/coco_extra/train.json" --coco-images "$data/coco_extra/images"
       --val-coco-ann "$work/coco_extra/holdout.json" --val-coco-images "$data/coco_extra/images")
common=(--encoder selfie --encoder-weights model_zoo/person_selfie_coco/model.tflite
        --coco-root "$data/coco" --coco-root "$data/coco" --folder "$data/person"
        --lr 1e-4 --ema 0.99 --batch-size 8 --patience 20 --no-tflite --quiet "${extra[@]}")
run() {  # NAME ARGS...: one training run in $work/NAME, resumed if a killed one is there
    local name=$1 resume=()
    shift
    [[ -f "$work/$name/state.json" ]] && resume=(--resume)
    nice -n 10 "$py" bin/train_person_unet.py "$@" --run-dir "$work/$name" \
        --output "$work/$name/export" "${resume[@]}"
}
run C_neg_small      "${common[@]}" --include-negatives --small-weight 3 --image-size 256 --epochs 3
run B_neg_small_hnm  "${common[@]}" --include-negatives --small-weight 3 --hard-negatives 0.02 --image-size 256 --epochs 3
run D_neg_small_320  "${common[@]}" --include-negatives --small-weight 3 --image-size 320 --epochs 5
run E_small_320      "${common[@]}" --small-weight 3 --image-size 320 --epochs 3
"$py" bin/soup_models.py "$work/D_neg_small_320" "$work/E_small_320" --image-size 320 \
    --output "$work/soup_D_E_320"
# F (session 6): the committed model's own recipe (scripts/train_person_model.sh: MediaPipe's
# weights, COCO train2017 twice + shared/person, picked on val2017) with every run at 320
f=(--folder "$data/person" --val-coco-root "$data/coco" --encoder selfie --batch-size 8 --quiet --no-tflite
   --image-size 320)
coco_twice=(--coco-root "$data/coco" --coco-root "$data/coco")
run F_320/lr3e-4      "${f[@]}" "${coco_twice[@]}" --lr 3e-4 --epochs 15
run F_320/lr3e-4_ema  "${f[@]}" "${coco_twice[@]}" --lr 3e-4 --epochs 12 --ema 0.99
run F_320/320px_ema   "${f[@]}" "${coco_twice[@]}" --lr 3e-4 --epochs 12 --ema 0.99 --seed 1
run F_320/lr1e-4_ema  "${f[@]}" "${coco_twice[@]}" --lr 1e-4 --epochs 20 --ema 0.99
run F_320/coco_once   "${f[@]}" --coco-root "$data/coco" --lr 3e-4 --epochs 12
"$py" bin/soup_models.py "$work"/F_320/{lr3e-4,lr3e-4_ema,320px_ema,lr1e-4_ema,coco_once} --image-size 320 \
    --output "$work/F_320/soup"
# G (session 6): a gate from MediaPipe's weights that never sees coco_extra's training split (the
# filter's fitting photos), with COCO train2017's person-free photos, picked on the holdout
run G_gate_neg "${coco_twice[@]}" --folder "$data/person" --include-negatives \
    --val-coco-ann "$work/coco_extra/holdout.json" --val-coco-images "$data/coco_extra/images" \
    --encoder selfie --batch-size 8 --quiet --image-size 320 --lr 3e-4 --epochs 12 --ema 0.99
# session 5's blob filter (then model_zoo/person_selfie_coco/blob_filter.json): fitted on the same
# coco_extra training split, photos the main network never trained on (run today, it fits one for
# the networks bundled now)
"$py" scripts/fit_blob_filter.py --model-path model_zoo/person_selfie_coco \
    --annotations "$work/coco_extra/train.json" --images "$data/coco_extra/images" \
    --output "$work/blob_filter.json" --bootstrap 20 \
    --check-annotations "$data/coco/annotations/instances_val2017.json" --check-images "$data/coco/val2017"
# the gate-size rows: the gate re-exported at another size (then a model folder with zoo.yaml
# naming it as gate_file), e.g.  "$py" scripts/export_at_size.py model_zoo/person_selfie_coco/gate.tflite 288 "$work/gate_288"
# score any export with the three figures:
#   bin/evaluate.py --annotations $data/coco/annotations/instances_val2017.json \
#       --images $data/coco/val2017 --model-path $work/soup_D_E_320/model.tflite
# the session-6 filter rows: main network at 320 and gate at 256 (both re-exported with
# scripts/export_at_size.py into one folder, zoo.yaml as the committed one's with input_size 320),
# a filter fitted as above plus --medium-weight 0 / 10
# and the gate_confirm rows: that folder without blob_filter_file, with gate_confirm: 0.6 / 0.7 / 0.8
