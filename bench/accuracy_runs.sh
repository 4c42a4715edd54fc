#!/usr/bin/env bash
# Real-data accuracy runs of Step 2 (CPU friendly, resumable: a finished run is skipped).
#   MODEL=../shared/models/all-MiniLM-L6-v2 DATA=data128/canonical_data/all-MiniLM-L6-v2 GLUE=../shared/data/glue \
#     bash bench/accuracy_runs.sh [a|b|mtl|seed|all]
# Features must be made with --max_seq_len 128 (prepro_std.py) so that dev examples are cut like the
# reference's. Lane "a" runs ours single-task (adamw, then the default adamax); lane "b" the Hugging Face
# reference, then lane "mtl": two multi-task runs (RTE+MRPC+STS-B, with and without SAN, on the first
# MTL_ROWS training rows of each task; MTL_EPOCHS epochs of MTL_OPTIMIZER at MTL_LR).
# Run lanes a and b side by side on a 2-core machine (one thread per job).
# Lane "seed" (with SEED=2019, …) repeats the single-task comparison with another seed.
# Lane "smart" (TASKS="rte mrpc") runs each task plain and with SMART (--adv_train, SPEC §6 defaults).
# Lane "kd": the plain RTE run of lane "smart" scores RTE train; a student trains on its soft labels (--mkd_opt 1).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/models/all-MiniLM-L6-v2}
DATA=${DATA:-data128/canonical_data/all-MiniLM-L6-v2}
GLUE=${GLUE:-../shared/data/glue}
OUT=${OUT:-bench/out}
SEED=${SEED:-2018}
MTL_ROWS=${MTL_ROWS:-1000}
MTL_EPOCHS=${MTL_EPOCHS:-2}
MTL_OPTIMIZER=${MTL_OPTIMIZER:-adamw}
MTL_LR=${MTL_LR:-5e-5}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

ours() {  # name epochs optimizer task_def datasets data_dir [learning_rate [extra train.py flags…]]
  local dir="$OUT/$1"
  [ -f "$dir/model_$(($2 - 1)).pt" ] && { echo "skip $1"; return; }
  python train.py --init_checkpoint "$MODEL" --data_dir "$6" --max_seq_len 128 --batch_size 16 --batch_size_eval 32 \
    --learning_rate "${7:-3e-5}" --seed "$SEED" --dataloader_num_workers 0 --log_per_updates 100 \
    --epochs "$2" --optimizer "$3" --task_def "$4" --train_datasets "$5" --test_datasets "$5" \
    --output_dir "$dir" "${@:8}" > "$OUT/$1.stdout" 2>&1
}
hf() {  # task
  local out="$OUT/hf_$1_s$SEED.json"
  [ -f "$out" ] && { echo "skip hf $1"; return; }
  python bench/hf_reference.py --task "$1" --glue_dir "$GLUE" --model "$MODEL" --max_seq_len 128 --batch_size 16 \
    --lr 3e-5 --epochs 3 --seed "$SEED" --output "$out" > "$OUT/hf_$1_s$SEED.stdout" 2>&1
}
mtl_data() {  # the first MTL_ROWS training rows of each task, full dev sets
  local dir="$OUT/mtl_data_$MTL_ROWS"
  mkdir -p "$dir"
  for task in rte mrpc stsb; do
    head -n "$MTL_ROWS" "$DATA/${task}_train.json" > "$dir/${task}_train.json"
    cp "$DATA/${task}_dev.json" "$dir/${task}_dev.json"
  done
  echo "$dir"
}
GLUE_DEF=experiments/glue/glue_task_def.yml
SAN_DEF=experiments/glue/glue_san_task_def.yml
case "${1:-all}" in
  a) ours rte_adamw_s$SEED 3 adamw $GLUE_DEF rte "$DATA"; ours mrpc_adamw_s$SEED 3 adamw $GLUE_DEF mrpc "$DATA"
     ours rte_adamax_s$SEED 3 adamax $GLUE_DEF rte "$DATA" ;;
  b) hf rte; hf mrpc
     "$0" mtl ;;
  mtl) MTL=$(mtl_data)
     ours mtl3_${MTL_ROWS}_${MTL_OPTIMIZER}_s$SEED $MTL_EPOCHS $MTL_OPTIMIZER $GLUE_DEF rte,mrpc,stsb "$MTL" $MTL_LR
     ours mtl3_san_${MTL_ROWS}_${MTL_OPTIMIZER}_s$SEED $MTL_EPOCHS $MTL_OPTIMIZER $SAN_DEF rte,mrpc,stsb "$MTL" $MTL_LR ;;
  seed) ours rte_adamw_s$SEED 3 adamw $GLUE_DEF rte "$DATA"; hf rte
        ours mrpc_adamw_s$SEED 3 adamw $GLUE_DEF mrpc "$DATA"; hf mrpc ;;  # another seed, one lane
  smart) for task in ${TASKS:-rte mrpc}; do  # SMART beside the plain run (Step 5), SPEC §6 defaults
       ours ${task}_adamw_s$SEED 3 adamw $GLUE_DEF $task "$DATA"
       ours ${task}_adamw_smart_s$SEED 3 adamw $GLUE_DEF $task "$DATA" 3e-5 --adv_train
     done ;;
  kd) teacher="$OUT/rte_adamw_s$SEED"  # lane "smart" (TASKS=rte) trains it; here it teaches a student (Step 5)
     KD="$OUT/kd_data_s$SEED"; mkdir -p "$KD"
     [ -f "$teacher/model_2.pt" ] || { echo "run lane smart with TASKS=rte first" >&2; exit 2; }
     [ -f "$KD/teacher_rte_train_scores.json" ] || python predict.py --task rte --checkpoint "$teacher/model_2.pt" \
       --prep_input "$DATA/rte_train.json" --batch_size_eval 32 --score "$KD/teacher_rte_train_scores.json"
     python prepare_distillation_data.py --task_def $GLUE_DEF --task rte --input "$DATA/rte_train.json" \
       --teacher_scores "$KD/teacher_rte_train_scores.json" --output "$KD/rte_kd_train.json"
     cp "$DATA/rte_dev.json" "$KD/rte_dev.json"
     ours rte_kd_student_s$SEED 3 adamw $GLUE_DEF rte "$KD" 3e-5 --train_datasets rte_kd --mkd_opt 1 ;;
  all) "$0" a & "$0" b; wait ;;
esac
