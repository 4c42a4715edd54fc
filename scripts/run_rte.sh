#!/usr/bin/env bash
# Fine-tune RTE from an MT-DNN checkpoint (the paper's stage 3), or from the plain encoder when none
# is given. Hyper-parameters as upstream's run_rte.sh: Adamax, learning rate 2e-5, 5 epochs; the RTE
# head is SAN (experiments/glue/glue_san_task_def.yml), so the head run_mt_dnn.sh trained carries over.
#
#   bash scripts/run_rte.sh [CHECKPOINT] [GLUE_DIR] [OUT] [NGPU] [extra train.py flags…]
#   bash scripts/run_rte.sh checkpoints/run_mt_dnn    # a run folder: its last epoch's model_<e>.pt
#   SMOKE=1 bash scripts/run_rte.sh checkpoints/run_mt_dnn_smoke
#
#   CHECKPOINT  $MTDNN_CHECKPOINT  MT-DNN .pt or train.py output folder; empty: the plain encoder $MTDNN_MODEL
#                                  (default ../shared/models/all-MiniLM-L6-v2,
#                                  else sentence-transformers/all-MiniLM-L6-v2)
#   GLUE_DIR    $MTDNN_GLUE_DIR    raw GLUE, read when features are missing (default ../shared/data/glue, else data)
#   OUT         $OUT               output folder (default checkpoints/run_rte)
#   NGPU        $NGPU              processes, torchrun when above 1 (default 1)
#   $MTDNN_TOKENIZER  tokenizer of a .pt that records none (released checkpoints); $MTDNN_FEATURES,
#   $MTDNN_WORK (default data), $TASK_DEF, $BATCH_SIZE (32), $LEARNING_RATE (2e-5), $EPOCHS (5),
#   $MAX_SEQ_LEN (512), $SMOKE=1, $DRY_RUN=1 (print the commands only)
RECIPE=run_rte
# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh" "$@"

fine_tune_glue_task rte 2e-5
