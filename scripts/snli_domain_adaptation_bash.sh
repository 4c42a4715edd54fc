#!/usr/bin/env bash
# Domain adaptation on SNLI (paper §4.4): starting from an MT-DNN checkpoint (or the plain encoder
# when none is given), fine-tune on 0.1 %, 1 %, 10 % and 100 % of SNLI's training set
# (snli_001, snli_01, snli_1, snli, made by experiments/domain_adaptation/domain_prepro.py)
# and evaluate each on SNLI dev and test. Adamax, learning rate 5e-5, batch 32, 5 epochs, linear head.
#
#   bash scripts/snli_domain_adaptation_bash.sh [CHECKPOINT] [DATA_DIR] [OUT] [NGPU] [extra train.py flags…]
#   bash scripts/snli_domain_adaptation_bash.sh checkpoints/run_mt_dnn data checkpoints/snli
#   SMOKE=1 bash scripts/snli_domain_adaptation_bash.sh   # on the samples in tests/data/domain
#
#   CHECKPOINT  $MTDNN_CHECKPOINT  MT-DNN .pt or train.py output folder; empty: the plain encoder $MTDNN_MODEL
#                                  (default ../shared/models/all-MiniLM-L6-v2,
#                                  else sentence-transformers/all-MiniLM-L6-v2)
#   DATA_DIR    $MTDNN_DATA_DIR    folder holding SNLI/ (GLUE layout) or snli_1.0/
#                                  (default data; SMOKE: tests/data/domain)
#   OUT         $OUT               one folder per subset inside (default checkpoints/snli_domain_adaptation_bash)
#   NGPU        $NGPU              processes, torchrun when above 1 (default 1)
#   $SUBSETS ("001 01 1 full"), $SEED (13, of the subsets), $MTDNN_FEATURES, $MTDNN_WORK (default data),
#   $MTDNN_TOKENIZER, $BATCH_SIZE (32), $LEARNING_RATE (5e-5), $EPOCHS (5), $MAX_SEQ_LEN (512), $SMOKE, $DRY_RUN
RECIPE=snli_domain_adaptation_bash
# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh" "$@"
run_domain_adaptation snli
