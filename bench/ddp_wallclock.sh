#!/usr/bin/env bash
# Wall-clock of one training process against two torchrun processes (gloo on CPU, or NCCL on 2 GPUs),
# same global batch, same data, same seed: one epoch on the first ROWS training rows of RTE.
#   MODEL=../shared/models/all-MiniLM-L6-v2 DATA=data/canonical_data/all-MiniLM-L6-v2 bash bench/ddp_wallclock.sh
# On CPU each process gets THREADS/2 threads (THREADS: the cores to use, default 2), the single
# process all THREADS, so both use the same cores. Prints one line per run and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/models/all-MiniLM-L6-v2}
DATA=${DATA:-data/canonical_data/all-MiniLM-L6-v2}
OUT=${OUT:-bench/out/ddp}
ROWS=${ROWS:-480}
THREADS=${THREADS:-2}
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$OUT/data"
head -n "$ROWS" "$DATA/rte_train.json" > "$OUT/data/rte_train.json"
head -n 64 "$DATA/rte_dev.json" > "$OUT/data/rte_dev.json"
ARGS=(--init_checkpoint "$MODEL" --data_dir "$OUT/data" --train_datasets rte --test_datasets rte --epochs 1
      --batch_size 16 --batch_size_eval 32 --max_seq_len 128 --optimizer adamw --learning_rate 3e-5
      --dataloader_num_workers 0 --log_per_updates 10)

seconds() {  # label command… → prints "label seconds"
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@" > "$OUT/$label.log" 2>&1
  end=$(date +%s.%N)
  echo "$label $(echo "$end - $start" | bc)"
}
one=$(OMP_NUM_THREADS=$THREADS seconds one_process python train.py "${ARGS[@]}" --output_dir "$OUT/one")
two=$(OMP_NUM_THREADS=$((THREADS / 2 > 0 ? THREADS / 2 : 1)) seconds two_processes \
  python -m torch.distributed.run --nproc_per_node 2 --master_port "${MASTER_PORT:-29561}" train.py "${ARGS[@]}" --output_dir "$OUT/two")
echo "$one"
echo "$two"
echo "ratio two/one: $(echo "scale=3; ${two#* } / ${one#* }" | bc)"
