#!/usr/bin/env bash
# MT-DNN multi-task refinement (the paper's stage 2): one shared encoder trained on every GLUE task
# present (MNLI, RTE, QQP, QNLI, MRPC, SST-2, CoLA, STS-B; WNLI left out, as in the paper) with SAN
# answer modules on the pair classification tasks (experiments/glue/glue_san_task_def.yml).
# Its last model_<e>.pt is the MT-DNN checkpoint that run_rte.sh / run_stsb.sh fine-tune.
#
#   bash scripts/run_mt_dnn.sh [MODEL] [GLUE_DIR] [OUT] [NGPU] [extra train.py flags…]
#   SMOKE=1 bash scripts/run_mt_dnn.sh            # a few updates on 32 rows per task (< 1 min on CPU)
#
#   MODEL     $MTDNN_MODEL     encoder to refine (hub id, folder or MT-DNN .pt)
#                              default: ../shared/models/all-MiniLM-L6-v2, else sentence-transformers/all-MiniLM-L6-v2
#   GLUE_DIR  $MTDNN_GLUE_DIR  raw GLUE folders, read when features are missing
#                              default: ../shared/data/glue if present, else data
#   OUT       $OUT             output folder                     default: checkpoints/run_mt_dnn
#   NGPU      $NGPU            processes (torchrun when above 1) default: 1
#   $MTDNN_FEATURES  tokenized features (default: $MTDNN_WORK/canonical_data/<tokenizer>); the tasks
#                    trained are the GLUE tasks with a <task>_train.json there
#   $MTDNN_WORK      root of canonical_data/ written by preprocessing (default: data)
#   $BATCH_SIZE (32), $LEARNING_RATE (5e-5), $EPOCHS (5), $MAX_SEQ_LEN (512), $SMOKE, $DRY_RUN=1 (print only)
RECIPE=run_mt_dnn
# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh" "$@"

DATA=${ARG_DATA:-$(user_path "${MTDNN_GLUE_DIR:-}")}
DATA=${DATA:-$(default_glue_dir)}
resolve_init "${ARG_MODEL:-$(user_path "${MTDNN_MODEL:-}")}" "$DEFAULT_ENCODER" "MTL refinement "

TASKS=$(glue_mtl_tasks)
note "tasks: $TASKS"
glue_features "$TASKS"

TEST_DATASETS=${TASKS/mnli/mnli_matched,mnli_mismatched}
train --init_checkpoint "$INIT" --tokenizer "$TOKENIZER" --data_dir "$FEATURES" \
  --task_def experiments/glue/glue_san_task_def.yml --train_datasets "$TASKS" --test_datasets "$TEST_DATASETS" \
  --optimizer adamax --learning_rate "${LEARNING_RATE:-5e-5}" --batch_size "${BATCH_SIZE:-32}" \
  --epochs "${EPOCHS:-5}" --max_seq_len "$MAX_SEQ_LEN" --grad_clipping 0 --global_grad_clipping 1 \
  --answer_opt 1 --output_dir "$OUT"
dev_table "$TEST_DATASETS" "$OUT"
[ "$DRY_RUN" = 1 ] || note "MT-DNN checkpoint: $(last_epoch_checkpoint "$OUT") (fine-tune it with scripts/run_rte.sh $OUT)"
