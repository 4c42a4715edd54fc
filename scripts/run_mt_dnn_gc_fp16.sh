#!/usr/bin/env bash
# MT-DNN multi-task refinement as run_mt_dnn.sh, with gradient accumulation and mixed precision
# (upstream's run_mt_dnn_gc_fp16.sh): batches of 8, one update every 4 batches (32 examples an
# update, as run_mt_dnn.sh), float16 autocast with a gradient scaler. Without a CUDA device float16
# is only emulated (several times slower than float32), so the recipe says so and uses --bf16 on CPUs
# that run bfloat16 natively (AVX-512 BF16 or AMX), float32 on others.
#
#   bash scripts/run_mt_dnn_gc_fp16.sh [MODEL] [GLUE_DIR] [OUT] [NGPU] [extra train.py flags…]
#   SMOKE=1 bash scripts/run_mt_dnn_gc_fp16.sh
#
#   MODEL, GLUE_DIR, NGPU and the other variables as in run_mt_dnn.sh; OUT default checkpoints/run_mt_dnn_gc_fp16
#   $PRECISION  fp16 (default; without CUDA: bf16 or fp32, see above), bf16 or fp32
#   $GRAD_ACCUMULATION_STEP (4), $BATCH_SIZE (8), $LEARNING_RATE (5e-5), $EPOCHS (5), $MAX_SEQ_LEN (512)
RECIPE=run_mt_dnn_gc_fp16
# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh" "$@"

DATA=${ARG_DATA:-$(user_path "${MTDNN_GLUE_DIR:-}")}
DATA=${DATA:-$(default_glue_dir)}
resolve_init "${ARG_MODEL:-$(user_path "${MTDNN_MODEL:-}")}" "$DEFAULT_ENCODER" "MTL refinement "

PRECISION=${PRECISION:-fp16}
if [ "$PRECISION" = fp16 ] && ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  # float16 on a CPU is emulated, several times slower than float32; bfloat16 is native on CPUs with
  # AVX-512 BF16 or AMX.
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo 2>/dev/null; then PRECISION=bf16; else PRECISION=fp32; fi
  note "torch sees no CUDA device, and float16 is emulated on a CPU (several times slower): $PRECISION instead of fp16"
fi
case $PRECISION in
  fp16) PRECISION_FLAGS=(--fp16) ;;
  bf16) PRECISION_FLAGS=(--bf16) ;;
  fp32) PRECISION_FLAGS=() ;;
  *) die "PRECISION must be fp16, bf16 or fp32, not '$PRECISION'" ;;
esac

TASKS=$(glue_mtl_tasks)
note "tasks: $TASKS"
glue_features "$TASKS"

TEST_DATASETS=${TASKS/mnli/mnli_matched,mnli_mismatched}
train --init_checkpoint "$INIT" --tokenizer "$TOKENIZER" --data_dir "$FEATURES" \
  --task_def experiments/glue/glue_san_task_def.yml --train_datasets "$TASKS" --test_datasets "$TEST_DATASETS" \
  --optimizer adamax --learning_rate "${LEARNING_RATE:-5e-5}" --batch_size "${BATCH_SIZE:-8}" \
  --grad_accumulation_step "${GRAD_ACCUMULATION_STEP:-4}" "${PRECISION_FLAGS[@]}" \
  --epochs "${EPOCHS:-5}" --max_seq_len "$MAX_SEQ_LEN" --grad_clipping 0 --global_grad_clipping 1 \
  --answer_opt 1 --output_dir "$OUT"
dev_table "$TEST_DATASETS" "$OUT"
[ "$DRY_RUN" = 1 ] || note "MT-DNN checkpoint: $(last_epoch_checkpoint "$OUT")"
