#!/usr/bin/env bash
# Quickstart: raw GLUE → canonical TSV → tokenized features → a 1-epoch multi-task run on
# RTE + MRPC + STS-B (first 1,000 training rows of each) → the dev table. ~5–10 min on 2 CPU cores.
#
#   bash scripts/quickstart.sh
#
# Locations (environment variables):
#   MTDNN_GLUE_DIR  raw GLUE folders (RTE/, MRPC/, STS-B/)  default: ../shared/data/glue if present, else data/
#   MTDNN_MODEL     encoder: HF hub id or local folder     default: ../shared/models/all-MiniLM-L6-v2 if present,
#                                                            else sentence-transformers/all-MiniLM-L6-v2
#   MTDNN_WORK      working folder                          default: data/quickstart
#   QUICKSTART_ROWS training rows per task                  default: 1000
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE_DIR=${MTDNN_GLUE_DIR:-$( [ -d ../shared/data/glue ] && echo ../shared/data/glue || echo data )}
MODEL=${MTDNN_MODEL:-$( [ -d ../shared/models/all-MiniLM-L6-v2 ] && echo ../shared/models/all-MiniLM-L6-v2 || echo sentence-transformers/all-MiniLM-L6-v2 )}
WORK=${MTDNN_WORK:-data/quickstart}
ROWS=${QUICKSTART_ROWS:-1000}
TASKS="rte mrpc stsb"
export TOKENIZERS_PARALLELISM=false

echo "== 1/4 raw GLUE ($GLUE_DIR) → canonical TSV"
mkdir -p "$WORK"
for folder in RTE MRPC STS-B; do
  [ -d "$GLUE_DIR/$folder" ] || { echo "error: $GLUE_DIR/$folder not found (set MTDNN_GLUE_DIR or run download.sh)" >&2; exit 2; }
  rm -rf "${WORK:?}/$folder" && cp -r "$GLUE_DIR/$folder" "$WORK/$folder"
done
python experiments/glue/glue_prepro.py --root_dir "$WORK" --tasks rte,mrpc,stsb

echo "== 2/4 first $ROWS training rows of each task"
CANON="$WORK/canonical_data"
for task in $TASKS; do
  head -n "$ROWS" "$CANON/${task}_train.tsv" > "$CANON/${task}_train.tsv.part" && mv "$CANON/${task}_train.tsv.part" "$CANON/${task}_train.tsv"
done

echo "== 3/4 tokenize train and dev with $MODEL"
FEATURES="$CANON/$(basename "$MODEL")"
rm -rf "$FEATURES"  # the quickstart evaluates dev only: no stale test features
python prepro_std.py --model "$MODEL" --root_dir "$CANON" --task_def experiments/glue/glue_task_def.yml \
  --max_seq_len 128 --datasets rte_train,rte_dev,mrpc_train,mrpc_dev,stsb_train,stsb_dev

echo "== 4/4 multi-task training (1 epoch)"
# AdamW here: in a run this short (189 updates) the paper's default Adamax, which has no bias
# correction, barely moves the heads (STS-B Pearson ~8 against ~50 with AdamW).
python train.py --init_checkpoint "$MODEL" --data_dir "$FEATURES" --task_def experiments/glue/glue_task_def.yml \
  --train_datasets rte,mrpc,stsb --test_datasets rte,mrpc,stsb --max_seq_len 128 --batch_size 16 \
  --batch_size_eval 32 --optimizer adamw --learning_rate 5e-5 --epochs 1 --log_per_updates 50 --dataloader_num_workers 0 \
  --output_dir "$WORK/output"
python scripts/dev_table.py --output_dir "$WORK/output" --datasets rte,mrpc,stsb --epoch 0
