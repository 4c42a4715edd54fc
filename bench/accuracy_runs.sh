#!/usr/bin/env bash
# Real-data accuracy runs of Step 2 (CPU friendly, resumable: a finished run is skipped).
#   MODEL=../shared/models/all-MiniLM-L6-v2 DATA=data128/canonical_data/all-MiniLM-L6-v2 GLUE=../shared/data/glue \
#     bash bench/accuracy_runs.sh [lane]
# Features must be made with --max_seq_len 128 (prepro_std.py) so that dev examples are cut like the
# reference's. Lane "a" runs ours, lane "b" the Hugging Face reference and the multi-task runs; run both
# lanes side by side on a 2-core machine (each job uses one thread).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/models/all-MiniLM-L6-v2}
DATA=${DATA:-data128/canonical_data/all-MiniLM-L6-v2}
GLUE=${GLUE:-../shared/data/glue}
OUT=${OUT:-bench/out}
SEED=${SEED:-2018}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
COMMON="--init_checkpoint $MODEL --data_dir $DATA --max_seq_len 128 --batch_size 16 --batch_size_eval 32 \
  --learning_rate 3e-5 --seed $SEED --dataloader_num_workers 0 --log_per_updates 100"

ours() {  # name epochs optimizer task_def train_datasets
  local dir="$OUT/$1"
  [ -f "$dir/model_$(($2 - 1)).pt" ] && { echo "skip $1"; return; }
  python train.py $COMMON --epochs "$2" --optimizer "$3" --task_def "$4" --train_datasets "$5" \
    --test_datasets "$5" --output_dir "$dir" > "$OUT/$1.stdout" 2>&1
}
hf() {  # task
  local out="$OUT/hf_$1_s$SEED.json"
  [ -f "$out" ] && { echo "skip hf $1"; return; }
  python bench/hf_reference.py --task "$1" --glue_dir "$GLUE" --model "$MODEL" --max_seq_len 128 --batch_size 16 \
    --lr 3e-5 --epochs 3 --seed "$SEED" --output "$out" > "$OUT/hf_$1_s$SEED.stdout" 2>&1
}
GLUE_DEF=experiments/glue/glue_task_def.yml
SAN_DEF=experiments/glue/glue_san_task_def.yml
case "${1:-all}" in
  a) ours rte_adamw_s$SEED 3 adamw $GLUE_DEF rte; ours mrpc_adamw_s$SEED 3 adamw $GLUE_DEF mrpc
     ours rte_adamax_s$SEED 3 adamax $GLUE_DEF rte; ours mrpc_adamax_s$SEED 3 adamax $GLUE_DEF mrpc ;;
  b) hf rte; hf mrpc
     ours mtl3_s$SEED 1 adamax $GLUE_DEF rte,mrpc,stsb; ours mtl3_san_s$SEED 1 adamax $SAN_DEF rte,mrpc,stsb ;;
  all) "$0" a & "$0" b; wait ;;
esac
