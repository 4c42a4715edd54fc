# Shared part of the scripts/run_*.sh and scripts/*_domain_adaptation_bash.sh recipes; sourced, not run.
#
#   RECIPE=run_rte; source "$(dirname "$0")/_common.sh" "$@"
#
# Reads the recipe's four positional arguments (MODEL DATA OUT NGPU; "" keeps a default; any further
# ones go to train.py) and the environment, moves to the repository root, and sets: INIT (what
# --init_checkpoint gets), INIT_KIND (mtdnn|encoder), TOKENIZER, NGPU, WORK (root of canonical_data/),
# SMOKE, MAX_SEQ_LEN, EXTRA_ARGS. The recipe then calls resolve_init, glue_features or domain_features,
# and train. Relative paths a user gives are taken from the folder the recipe was started in.
set -euo pipefail

CALLER_DIR=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# The experiments/ scripts import the repository's packages also without `pip install -e .`.
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false

die() { echo "error: $RECIPE: $*" >&2; exit 2; }
note() { echo "[$RECIPE] $*"; }

# A path the user gave, made absolute against the caller's folder; a hub id (nothing there) stays as it is.
user_path() {
  local path=$1
  if [ -z "$path" ] || [[ "$path" == /* ]]; then echo "$path"
  elif [ -e "$CALLER_DIR/$path" ] || [[ "$path" == ./* || "$path" == ../* || "$path" == *.pt ]]; then
    echo "$CALLER_DIR/$path"
  else echo "$path"; fi
}

# An output path the user gave, made absolute against the caller's folder (it need not exist yet).
user_out_path() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$CALLER_DIR/$1"; fi; }

# Print the exact command (quoted only where the shell needs it), then run it (DRY_RUN=1: print only).
run() {
  local word line="+"
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then line+=" $word"; else line+=" $(printf '%q' "$word")"; fi
  done
  echo "$line"
  [ "$DRY_RUN" = 1 ] || "$@"
}

# `python train.py ARGS…`, or `torchrun --nproc_per_node NGPU train.py ARGS…` when NGPU > 1; then
# SMOKE's evaluation/logging flags and the user's extra arguments (argparse keeps the last of a flag).
train() {
  local smoke=()
  [ "$SMOKE" = 1 ] && smoke=(--batch_size_eval 32 --log_per_updates 2 --dataloader_num_workers 0)
  if [ "$NGPU" -gt 1 ]; then run torchrun --nproc_per_node "$NGPU" train.py "$@" "${smoke[@]}" "${EXTRA_ARGS[@]}"
  else run python train.py "$@" "${smoke[@]}" "${EXTRA_ARGS[@]}"; fi
}

# The last epoch's model_<e>.pt in a train.py output folder; empty when there is none.
last_epoch_checkpoint() {
  local best="" best_epoch=-1 file epoch
  for file in "$1"/model_*.pt; do
    epoch=${file##*/model_}; epoch=${epoch%.pt}
    [[ -f "$file" && "$epoch" =~ ^[0-9]+$ ]] || continue  # model_<e>_<updates>.pt are mid-epoch saves
    if [ "$epoch" -gt "$best_epoch" ]; then best_epoch=$epoch; best=$file; fi
  done
  echo "$best"
}

# The tokenizer a train.py checkpoint records; empty for released checkpoints, which record none.
recorded_tokenizer() {
  python -c 'import sys, torch
try:
    checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=True, mmap=True)
except Exception as err:
    reason = type(err).__name__
    print(f"error: {sys.argv[2]}: {sys.argv[1]}: not a readable MT-DNN checkpoint ({reason})", file=sys.stderr)
    sys.exit(2)
config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
print(((config or {}).get("tokenizer") or {}).get("name", ""))' "$1" "$RECIPE"
}

# INIT, INIT_KIND and TOKENIZER from a model: an MT-DNN .pt, a train.py output folder (its last epoch's
# model_<e>.pt) or an encoder (hub id or folder); empty: $2. Prints which it starts from.
resolve_init() {
  local given=$1 fallback=$2 last=""
  [ -d "$given" ] && last=$(last_epoch_checkpoint "$given")
  if [ -n "$last" ]; then
    INIT=$last; INIT_KIND=mtdnn
  elif [[ "$given" == *.pt ]]; then
    [ -f "$given" ] || die "MT-DNN checkpoint $given not found"
    INIT=$given; INIT_KIND=mtdnn
  else
    INIT=${given:-$fallback}; INIT_KIND=encoder
  fi
  if [ "$INIT_KIND" = mtdnn ]; then
    TOKENIZER=$(user_path "${MTDNN_TOKENIZER:-}")
    [ -n "$TOKENIZER" ] || TOKENIZER=$(recorded_tokenizer "$INIT")
    [ -n "$TOKENIZER" ] || die "$INIT records no tokenizer: set MTDNN_TOKENIZER (e.g. bert-base-uncased)"
    note "starting from the MT-DNN checkpoint $INIT (tokenizer $TOKENIZER)"
  else
    TOKENIZER=$INIT
    note "${3:-no MT-DNN checkpoint given: }starting from the plain encoder $INIT"
  fi
}

# Folder prepro_std.py writes the features of TOKENIZER into, under canonical_data/.
features_dir() {
  if [ -d "$TOKENIZER" ]; then echo "$WORK/canonical_data/$(basename "$TOKENIZER")"
  else echo "$WORK/canonical_data/$TOKENIZER"; fi
}

# True when every named file exists in folder $1.
all_present() {
  local folder=$1 file; shift
  for file in "$@"; do [ -f "$folder/$file" ] || return 1; done
}

# Link each raw folder of DATA that exists into WORK: the prepro scripts write <root>/canonical_data.
link_raw() {
  local folder
  [ -d "$DATA" ] || die "data folder $DATA not found (pass it as the second argument)"
  run mkdir -p "$WORK"
  [ -d "$WORK" ] && [ "$(cd "$DATA" && pwd -P)" = "$(cd "$WORK" && pwd -P)" ] && return 0
  for folder in "$@"; do
    [ -e "$DATA/$folder" ] || continue
    [ -e "$WORK/$folder" ] && [ ! -L "$WORK/$folder" ] && continue  # a real folder of the user's stays
    run ln -sfn "$(cd "$DATA/$folder" && pwd -P)" "$WORK/$folder"
  done
}

# SMOKE: cut each canonical dev/train file of the named tasks to its first SMOKE_ROWS rows and drop
# the test files (in the temp WORK), so that the run evaluates a small dev set only.
slice_canonical() {
  local task file
  for task in "$@"; do
    rm -f "$WORK/canonical_data/${task}"_*test.tsv
    for file in "$WORK/canonical_data/${task}"_*.tsv; do
      [ -f "$file" ] || continue
      head -n "$SMOKE_ROWS" "$file" > "$file.part" && mv "$file.part" "$file"
    done
  done
  note "SMOKE: kept the first $SMOKE_ROWS rows of each train/dev file of $*"
}

# SMOKE with MTDNN_FEATURES set: copy the first SMOKE_ROWS lines of the named tasks' files into FEATURES.
slice_features() {
  local source=$1 task file; shift
  mkdir -p "$FEATURES"
  for task in "$@"; do
    for file in "$source/${task}"_*.json; do
      [[ -f "$file" && "$file" != *test.json ]] && head -n "$SMOKE_ROWS" "$file" > "$FEATURES/$(basename "$file")"
    done
  done
  note "SMOKE: first $SMOKE_ROWS rows of each file of $* from $source"
}

# Sets FEATURES to a folder holding the files $3… of tasks $2 (comma-separated), made when missing:
# $1 is the canonical step (a function writing WORK/canonical_data/ for those tasks), then prepro_std.py.
ensure_features() {
  local canonical_step=$1 tasks=$2 given task_list; shift 2
  IFS=, read -ra task_list <<< "$tasks"
  given=$(user_path "${MTDNN_FEATURES:-}")
  if [ -n "$given" ]; then
    FEATURES=$given
    if [ "$SMOKE" = 1 ]; then FEATURES=$WORK/features; slice_features "$given" "${task_list[@]}"; fi
    all_present "$FEATURES" "$@" || die "MTDNN_FEATURES=$given lacks some of: $*"
    note "features from $given: no preprocessing"
    return 0
  fi
  FEATURES=$(features_dir)
  if all_present "$FEATURES" "$@"; then
    note "features found in $FEATURES: no preprocessing"
    return 0
  fi
  if all_present "$WORK/canonical_data" "${@/%.json/.tsv}"; then
    note "canonical TSV found in $WORK/canonical_data: tokenizing only"
  else
    "$canonical_step" "$tasks"
  fi
  [ "$SMOKE" = 1 ] && slice_canonical "${task_list[@]}"
  run python prepro_std.py --model "$TOKENIZER" --root_dir "$WORK/canonical_data" --task_def "$PREPRO_TASK_DEF" \
    --max_seq_len "$MAX_SEQ_LEN" --tasks "$tasks"
  [ "$DRY_RUN" = 1 ] || all_present "$FEATURES" "$@" || die "preprocessing did not write all of $* into $FEATURES"
}

# Canonical step of GLUE: raw GLUE folders → WORK/canonical_data/<task>_<split>.tsv.
glue_canonical() {
  local task folders=()
  for task in ${1//,/ }; do folders+=("$(glue_folder "$task")"); done
  for task in "${folders[@]}"; do
    [ -d "$DATA/$task" ] ||
      die "raw GLUE folder $DATA/$task not found (pass the GLUE folder as the second argument or set MTDNN_GLUE_DIR)"
  done
  link_raw "${folders[@]}"
  run python experiments/glue/glue_prepro.py --root_dir "$WORK" --tasks "$1"
}

# Canonical step of SciTail/SNLI: raw files → WORK/canonical_data/, with the 0.1/1/10 % training subsets.
domain_canonical() {
  link_raw SciTail SNLI snli_1.0
  run python experiments/domain_adaptation/domain_prepro.py --root_dir "$WORK" --tasks "$1" --seed "${SEED:-13}"
}

# The raw GLUE folder when none is given: the offline copy beside the checkout, else data/.
default_glue_dir() {
  if [ -d ../shared/data/glue ]; then (cd ../shared/data/glue && pwd); else echo "$REPO_ROOT/data"; fi
}

# A GLUE task's folder in the GLUE download.
glue_folder() {
  case $1 in
    cola) echo CoLA ;; sst) echo SST-2 ;; mrpc) echo MRPC ;; stsb) echo STS-B ;; qqp) echo QQP ;;
    mnli) echo MNLI ;; qnli) echo QNLI ;; rte) echo RTE ;; wnli) echo WNLI ;; *) die "not a GLUE task: $1" ;;
  esac
}

# FEATURES for GLUE tasks (comma-separated) with train and dev files (MNLI: matched and mismatched dev).
glue_features() {
  local task files=()
  PREPRO_TASK_DEF=experiments/glue/glue_task_def.yml
  for task in ${1//,/ }; do
    if [ "$task" = mnli ]; then files+=(mnli_train.json mnli_matched_dev.json mnli_mismatched_dev.json)
    else files+=("${task}_train.json" "${task}_dev.json"); fi
  done
  ensure_features glue_canonical "$1" "${files[@]}"
}

# The GLUE tasks of MTL refinement (upstream's order; WNLI left out, as in the paper): those with a
# <task>_train.json in the features folder; with none there, those with a canonical <task>_train.tsv in
# WORK; with none there either, those with a raw <Task>/train.tsv in DATA. Comma-separated.
glue_mtl_tasks() {
  local task found=() features=${MTDNN_FEATURES:+$(user_path "$MTDNN_FEATURES")}
  local all=(mnli rte qqp qnli mrpc sst cola stsb)
  features=${features:-$(features_dir)}
  for task in "${all[@]}"; do [ -f "$features/${task}_train.json" ] && found+=("$task"); done
  if [ ${#found[@]} = 0 ]; then
    for task in "${all[@]}"; do [ -f "$WORK/canonical_data/${task}_train.tsv" ] && found+=("$task"); done
  fi
  if [ ${#found[@]} = 0 ]; then
    for task in "${all[@]}"; do [ -f "$DATA/$(glue_folder "$task")/train.tsv" ] && found+=("$task"); done
  fi
  [ ${#found[@]} -gt 0 ] ||
    die "no GLUE task found: no <task>_train.json in $features, no raw <Task>/train.tsv in $DATA"
  local IFS=,
  echo "${found[*]}"
}

# FEATURES for a domain-adaptation task: its full, 10 %, 1 % and 0.1 % training sets and dev.
domain_features() {
  PREPRO_TASK_DEF=experiments/domain_adaptation/domain_adaptation_def.yml
  ensure_features domain_canonical "$1" "$1_train.json" "$1_1_train.json" "$1_01_train.json" "$1_001_train.json" \
    "$1_dev.json"
}

# The domain-adaptation experiment (paper §4.4) of task $1 (scitail|snli): one run per training subset
# of $SUBSETS (default "001 01 1 full": 0.1 %, 1 %, 10 %, 100 %), each into $OUT/<dataset>, each
# evaluated on the task's dev and test sets; hyper-parameters as upstream's domain_adaptation_run.sh.
run_domain_adaptation() {
  local task=$1 subset dataset datasets=()
  DATA=${ARG_DATA:-$(user_path "${MTDNN_DATA_DIR:-}")}
  if [ -z "$DATA" ] && [ "$SMOKE" = 1 ]; then DATA=$REPO_ROOT/tests/data/domain; fi
  DATA=${DATA:-$REPO_ROOT/data}
  resolve_init "${ARG_MODEL:-$(user_path "${MTDNN_CHECKPOINT:-}")}" "$(user_path "${MTDNN_MODEL:-$DEFAULT_ENCODER}")"
  domain_features "$task"
  for subset in ${SUBSETS:-001 01 1 full}; do
    case $subset in
      full) dataset=$task ;;
      001|01|1) dataset=${task}_$subset ;;
      *) die "SUBSETS holds '$subset': use 001, 01, 1 or full" ;;
    esac
    datasets+=("$dataset")
    if [ "$DRY_RUN" = 1 ]; then note "== $dataset"
    else note "== $dataset: $(wc -l < "$FEATURES/${dataset}_train.json") training examples"; fi
    train --init_checkpoint "$INIT" --tokenizer "$TOKENIZER" --data_dir "$FEATURES" \
      --task_def experiments/domain_adaptation/domain_adaptation_def.yml --train_datasets "$dataset" \
      --test_datasets "$task" --optimizer adamax --learning_rate "${LEARNING_RATE:-5e-5}" \
      --batch_size "${BATCH_SIZE:-32}" --epochs "${EPOCHS:-5}" --max_seq_len "$MAX_SEQ_LEN" --grad_clipping 0 \
      --global_grad_clipping 1 --answer_opt 0 --output_dir "$OUT/$dataset"
  done
  for dataset in "${datasets[@]}"; do
    note "== $dataset ($OUT/$dataset)"
    dev_table "$task" "$OUT/$dataset"
  done
}

# One GLUE task fine-tuned from $ARG_MODEL / $MTDNN_CHECKPOINT (else the plain encoder), as upstream's
# run_<task>.sh: Adamax, SAN task definitions, learning rate $2 unless $LEARNING_RATE; then its dev table.
fine_tune_glue_task() {
  local task=$1 learning_rate=$2
  DATA=${ARG_DATA:-$(user_path "${MTDNN_GLUE_DIR:-}")}
  DATA=${DATA:-$(default_glue_dir)}
  resolve_init "${ARG_MODEL:-$(user_path "${MTDNN_CHECKPOINT:-}")}" "$(user_path "${MTDNN_MODEL:-$DEFAULT_ENCODER}")"
  glue_features "$task"
  train --init_checkpoint "$INIT" --tokenizer "$TOKENIZER" --data_dir "$FEATURES" \
    --task_def "${TASK_DEF:-experiments/glue/glue_san_task_def.yml}" --train_datasets "$task" --test_datasets "$task" \
    --optimizer adamax --learning_rate "${LEARNING_RATE:-$learning_rate}" --batch_size "${BATCH_SIZE:-32}" \
    --epochs "${EPOCHS:-5}" --max_seq_len "$MAX_SEQ_LEN" --grad_clipping 0 --global_grad_clipping 1 \
    --output_dir "$OUT"
  dev_table "$task" "$OUT"
}

# Print the dev table of a run's last evaluated epoch (DRY_RUN: nothing ran, nothing to print).
dev_table() {
  local names=$1 out=$2 file epoch last=-1
  [ "$DRY_RUN" = 1 ] && return 0
  for file in "$out/${names%%,*}"_dev_scores_epoch_*.json; do
    epoch=${file##*_epoch_}; epoch=${epoch%.json}
    [[ -f "$file" && "$epoch" =~ ^[0-9]+$ && "$epoch" -gt "$last" ]] && last=$epoch
  done
  [ "$last" -ge 0 ] || die "no dev score file of ${names%%,*} in $out"
  run python scripts/dev_table.py --output_dir "$out" --datasets "$names" --epoch "$last"
}

# ---- positional arguments and the environment ----------------------------------------------------
SMOKE=${SMOKE:-0}
DRY_RUN=${DRY_RUN:-0}
SMOKE_ROWS=${SMOKE_ROWS:-16}
SHARED_MODEL=../shared/models/all-MiniLM-L6-v2
DEFAULT_ENCODER=sentence-transformers/all-MiniLM-L6-v2
if [ -d "$SHARED_MODEL" ]; then DEFAULT_ENCODER=$(cd "$SHARED_MODEL" && pwd); fi
ARG_MODEL=$(user_path "${1:-}")
ARG_DATA=$(user_path "${2:-}")
ARG_OUT=${3:-}
NGPU=${4:-${NGPU:-1}}
EXTRA_ARGS=("${@:5}")
[[ "$NGPU" =~ ^[1-9][0-9]*$ ]] || die "NGPU must be a whole number above 0, not '$NGPU'"
if [ -n "${ARG_OUT:-${OUT:-}}" ]; then OUT=$(user_out_path "${ARG_OUT:-$OUT}")
elif [ "$SMOKE" = 1 ]; then OUT=$REPO_ROOT/checkpoints/${RECIPE}_smoke
else OUT=$REPO_ROOT/checkpoints/$RECIPE; fi
if [ "$SMOKE" = 1 ]; then
  # A few updates on a slice: these win over the environment; the recipes' defaults apply otherwise.
  EPOCHS=1 BATCH_SIZE=8 MAX_SEQ_LEN=64
  # SMOKE never writes the user's data folders: it preprocesses its slice in a temp folder.
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mtdnn-$RECIPE-XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  note "SMOKE: 1 epoch, batch 8, max_seq_len 64 on the first $SMOKE_ROWS rows of each file (work folder $WORK)"
elif [ -n "${MTDNN_WORK:-}" ]; then
  WORK=$(user_out_path "$MTDNN_WORK")
else
  WORK=$REPO_ROOT/data
fi
MAX_SEQ_LEN=${MAX_SEQ_LEN:-512}
note "commands below run in $REPO_ROOT"
