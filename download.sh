#!/usr/bin/env bash
# Fetch the public data sets and encoders of the MT-DNN experiments into upstream's paths.
#
#   bash download.sh                                   # everything (= all)
#   bash download.sh glue --glue_tasks RTE,MRPC,STS-B  # some GLUE tasks only
#   bash download.sh glue --from ../shared/data        # copy from a local mirror instead
#   bash download.sh squad ner --data_dir /big/disk/data
#
# Sets (any number; none = all):
#   glue        data/{CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI,diagnostic}/ as the GLUE download script
#               lays them out (MRPC train/dev/test built from the MSR files and the GLUE dev ids)
#   scitail     data/SciTail/ (SciTail v1.1)
#   snli        data/snli_1.0/ (the SNLI 1.0 release; domain_prepro.py reads it)
#   ner         data/ner/{train,valid,test}.txt (CoNLL-2003 English)
#   squad       data/squad/{train,dev}.json (v1.1) and data/squad_v2/{train,dev}.json (v2.0)
#   models      encoders into the Hugging Face cache (--models; with --from: into mt_dnn_models/)
#   all         all of the above;  model_only  = models (upstream's name)
#
# Options:
#   --from DIR        copy from a local mirror: DIR/glue/<Task> or DIR/<Task>, DIR/SciTail, DIR/snli_1.0,
#                     DIR/SNLI, DIR/domain_adaptation, DIR/ner, DIR/squad, DIR/squad_v2, DIR/models/<name>
#   --data_dir DIR    where the data sets go (default: data)
#   --glue_tasks L    comma-separated GLUE folders (default: all ten; AX = diagnostic)
#   --models L        comma-separated Hugging Face ids (default: $DEFAULT_MODELS below)
# Environment:
#   MTDNN_DOWNLOAD_MIRROR   http(s):// or file:// base that mirrors the sources as BASE/<host>/<path>
#   MTDNN_CONNECT_TIMEOUT   seconds to wait for a connection (default 10)
#   MTDNN_STALL_TIMEOUT     seconds without data before a transfer is abandoned (default 60)
#   MTDNN_SKIP_CHECKSUM=1   accept files whose SHA-256 differs from the recorded one (a warning is printed)
#   HF_ENDPOINT, HF_HOME    the usual Hugging Face hub mirror and cache settings for `models`
#
# Downloads resume (curl -C -) and finished sets are skipped (markers in DATA_DIR/.download/).
# Errors print one line and exit non-zero: 2 for bad arguments, 1 for failed transfers or checks.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

DEFAULT_MODELS="bert-base-uncased,bert-large-uncased,roberta-base,roberta-large,microsoft/deberta-base,sentence-transformers/all-MiniLM-L6-v2"
GLUE_TASKS_ALL=(CoLA SST-2 MRPC STS-B QQP MNLI QNLI RTE WNLI diagnostic)
ALL_SETS=(glue scitail snli ner squad models)
CURL_ARGS=(-fL --connect-timeout "${MTDNN_CONNECT_TIMEOUT:-10}" --speed-limit 1 --speed-time "${MTDNN_STALL_TIMEOUT:-60}")
PY=${PYTHON:-$([ -x "$HERE/.venv/bin/python" ] && echo "$HERE/.venv/bin/python" || echo python3)}

# Sources: name|url|bytes|sha256. The SHA-256 values are those the Hugging Face `datasets` loaders
# recorded for these URLs (glue, scitail, snli, squad, squad_v2, conll2003 dataset_infos.json); the
# AX and MRPC files were checked against the offline GLUE copy. SciTail is fetched from AI2's
# current bucket; its checksum was recorded for the same file at the older data.allenai.org address.
FB=https://dl.fbaipublicfiles.com
GLUE_SOURCES=(
  "CoLA|$FB/glue/data/CoLA.zip|376971|f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff"
  "SST-2|$FB/glue/data/SST-2.zip|7439277|d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"
  "QQP|$FB/glue/data/QQP-clean.zip|41696084|40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0"
  "STS-B|$FB/glue/data/STS-B.zip|802872|e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85"
  "MNLI|$FB/glue/data/MNLI.zip|312783507|e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633"
  "QNLI|$FB/glue/data/QNLIv2.zip|10627589|e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5"
  "RTE|$FB/glue/data/RTE.zip|697150|6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee"
  "WNLI|$FB/glue/data/WNLI.zip|28999|ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46"
  "diagnostic|$FB/glue/data/AX.tsv|222257|0e13510b1bb14436ff7e2ee82338f0efb0133ecf2e73507a697dc210db3f05fd"
)
MRPC_SOURCES=(
  "msr_paraphrase_train.txt|$FB/senteval/senteval_data/msr_paraphrase_train.txt|1047044|60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89"
  "msr_paraphrase_test.txt|$FB/senteval/senteval_data/msr_paraphrase_test.txt|441275|a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784"
  "dev_ids.tsv|$FB/glue/data/mrpc_dev_ids.tsv|6222|971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7"
)
SCITAIL_SOURCE="SciTailV1.1.zip|https://ai2-public-datasets.s3.amazonaws.com/scitail/SciTailV1.1.zip|14174621|3fccd37350a94ca280b75998568df85fc2fc62843a3198d644fcbf858e6943d5"
SNLI_SOURCE="snli_1.0.zip|https://nlp.stanford.edu/projects/snli/snli_1.0.zip|94550081|afb3d70a5af5d8de0d9d81e2637e0fb8c22d1235c2749d83125ca43dab0dbd3e"
CONLL=https://raw.githubusercontent.com/davidsbatista/NER-datasets/dcb6c7439a7de43abc2448bad5b1d81a47f26c0d/CONLL2003
NER_SOURCES=(
  "train.txt|$CONLL/train.txt|3283418|c99b26852dabf57ca9d30a0e892b84544cc8962003151e14a71077c55dc66db5"
  "valid.txt|$CONLL/valid.txt|827441|f1f6469322876887de1d04acd43c59b02f59d5b02acf42c027132fa1bf349cb2"
  "test.txt|$CONLL/test.txt|748093|82e0c72d262f86ad3e78b15c5d980bbf87cb205aa4bf6d2d97643f463f8d7ff7"
)
SQUAD=https://rajpurkar.github.io/SQuAD-explorer/dataset
SQUAD_SOURCES=(
  "squad/train.json|$SQUAD/train-v1.1.json|30288272|3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955"
  "squad/dev.json|$SQUAD/dev-v1.1.json|4854279|95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"
  "squad_v2/train.json|$SQUAD/train-v2.0.json|42123633|68dcfbb971bd3e96d5b46c7177b16c1a4e7d4bdef19fb204502738552dede002"
  "squad_v2/dev.json|$SQUAD/dev-v2.0.json|4370528|80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8"
)

die() { echo "download.sh: error: $*" >&2; exit "${EXIT_CODE:-1}"; }
usage_error() { EXIT_CODE=2 die "$* (bash download.sh [glue|scitail|snli|ner|squad|models|all|model_only] [--from DIR] [--data_dir DIR] [--glue_tasks L] [--models L])"; }
say() { echo "== $*"; }
lower() { echo "$1" | tr '[:upper:]' '[:lower:]'; }

# ---- arguments -------------------------------------------------------------------------------
SETS=() FROM="" DATA_DIR=data GLUE_TASKS="" MODELS=$DEFAULT_MODELS EXPLICIT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --from|--data_dir|--glue_tasks|--models)
      [ $# -ge 2 ] && [ -n "$2" ] || usage_error "$1 needs a value"
      case "$1" in --from) FROM=$2 ;; --data_dir) DATA_DIR=$2 ;; --glue_tasks) GLUE_TASKS=$2 ;; --models) MODELS=$2 ;; esac
      shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    all) SETS+=("${ALL_SETS[@]}"); EXPLICIT=0; shift ;;
    model_only) SETS+=(models); shift ;;
    glue|scitail|snli|ner|squad|models) SETS+=("$1"); shift ;;
    *) usage_error "unknown set or option '$1'" ;;
  esac
done
[ ${#SETS[@]} -gt 0 ] || { SETS=("${ALL_SETS[@]}"); EXPLICIT=0; }
[ -z "$FROM" ] || [ -d "$FROM" ] || usage_error "--from $FROM is not a directory"

SELECTED_GLUE=()
for want in ${GLUE_TASKS//,/ }; do
  found=""
  for task in "${GLUE_TASKS_ALL[@]}"; do
    if [ "$(lower "$want")" = "$(lower "$task")" ] || { [ "$(lower "$want")" = ax ] && [ "$task" = diagnostic ]; }; then
      found=$task
    fi
  done
  [ -n "$found" ] || usage_error "--glue_tasks: unknown GLUE task '$want' (one of: ${GLUE_TASKS_ALL[*]} AX)"
  SELECTED_GLUE+=("$found")
done
[ ${#SELECTED_GLUE[@]} -gt 0 ] || SELECTED_GLUE=("${GLUE_TASKS_ALL[@]}")

DL="$DATA_DIR/.download"
exec 3>&1  # progress lines from inside $(fetch ...) reach stdout through fd 3
mkdir -p "$DL" || die "cannot create $DL"

# ---- helpers ---------------------------------------------------------------------------------
sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# Map a source URL onto MTDNN_DOWNLOAD_MIRROR (BASE/<host>/<path>) when it is set.
mirrored() {
  local url=$1
  if [ -n "${MTDNN_DOWNLOAD_MIRROR:-}" ]; then echo "${MTDNN_DOWNLOAD_MIRROR%/}/${url#*://}"; else echo "$url"; fi
}

# fetch "name|url|bytes|sha256": download (resuming) into $DL, check size and SHA-256, print the path.
fetch() {
  local name url bytes sha part final have got out rc attempt
  IFS='|' read -r name url bytes sha <<<"$1"
  url=$(mirrored "$url")
  final="$DL/${name//\//_}"
  part="$final.part"
  [ -f "$final" ] && { echo "$final"; return 0; }
  command -v curl >/dev/null || die "curl not found: install it, or copy from a local mirror with --from DIR"
  have=0
  [ ! -f "$part" ] || have=$(wc -c <"$part" | tr -d ' ')
  [ "$have" -le "$bytes" ] || { rm -f "$part"; have=0; }  # longer than the real file: start again
  if [ "$have" != "$bytes" ]; then
    echo "   $url" >&3
    for attempt in resume fresh; do
      rc=0
      if [ -t 2 ]; then  # a terminal: show curl's progress bar
        curl "${CURL_ARGS[@]}" --progress-bar -C - -o "$part" "$url" || rc=$?
        out="curl exit code $rc"
      else
        out=$(curl "${CURL_ARGS[@]}" -sS -C - -o "$part" "$url" 2>&1) || rc=$?
        out=$(echo "$out" | tr '\n' ' ' | sed 's/ *$//')
      fi
      # 33: the server cannot resume; start again from byte 0 once.
      if [ $rc -eq 33 ] && [ $attempt = resume ]; then rm -f "$part"; continue; fi
      break
    done
    case $rc in
      0) ;;
      5|6|7|28|35|56) die "cannot fetch $url ($out): offline? copy from a local mirror instead: bash download.sh ${SETS[*]} --from DIR" ;;
      *) die "cannot fetch $url ($out); rerun to resume, or use --from DIR or MTDNN_DOWNLOAD_MIRROR" ;;
    esac
  fi
  have=$(wc -c <"$part" | tr -d ' ')
  got=$(sha256_of "$part")
  if [ "$have" != "$bytes" ] || [ "$got" != "$sha" ]; then
    if [ "${MTDNN_SKIP_CHECKSUM:-0}" = 1 ]; then
      echo "download.sh: warning: $url: $have bytes, SHA-256 $got differ from the recorded $bytes, $sha (accepted: MTDNN_SKIP_CHECKSUM=1)" >&2
    else
      rm -f "$part"
      die "$url: $have bytes, SHA-256 $got; expected $bytes bytes, $sha (file removed; MTDNN_SKIP_CHECKSUM=1 accepts a rebuilt mirror copy)"
    fi
  fi
  mv "$part" "$final"
  echo "$final"
}

# unzip_to ZIP DIR: extract into DIR (created afresh), dropping macOS resource folders.
unzip_to() {
  rm -rf "$2" && mkdir -p "$2"
  "$PY" -m zipfile -e "$1" "$2" 2>/dev/null || { rm -rf "$2"; die "$1: not a readable zip file (delete it and rerun)"; }
  rm -rf "$2/__MACOSX"
}

# the single folder inside DIR (zips hold one top folder), or DIR itself
top_folder() {
  local entries=("$1"/*)
  if [ ${#entries[@]} -eq 1 ] && [ -d "${entries[0]}" ]; then echo "${entries[0]}"; else echo "$1"; fi
}

# place SRC DEST: replace DEST by SRC atomically enough (move into place, old copy removed).
place() {
  rm -rf "$2.old"
  [ ! -e "$2" ] || mv "$2" "$2.old"
  mkdir -p "$(dirname "$2")"
  mv "$1" "$2"
  rm -rf "$2.old"
}

done_marker() { echo "$DL/${1//\//_}.done"; }
is_done() { [ -f "$(done_marker "$1")" ] && [ -e "$2" ]; }
mark_done() { echo "$2" > "$(done_marker "$1")"; }
skip_note() { say "$1: already in $2 (delete it to fetch again)"; }

# copy_tree SRC DEST: a fresh copy of a mirror folder.
copy_tree() {
  local tmp="$DL/tmp.copy"
  rm -rf "$tmp"
  cp -R "$1" "$tmp" || die "cannot copy $1"
  place "$tmp" "$2"
  mark_done "$(basename "$2")" "copied from $1"
  say "$(basename "$2"): $1 -> $2"
}

# Missing sources in a mirror: an error for a set asked for by name, a note under `all`.
missing() {
  if [ "$EXPLICIT" = 1 ]; then die "$1"; else echo "download.sh: note: $1; skipped" >&2; fi
}

# ---- GLUE ------------------------------------------------------------------------------------
build_mrpc() {
  local dir=$1 train test ids
  train=$(fetch "${MRPC_SOURCES[0]}")
  test=$(fetch "${MRPC_SOURCES[1]}")
  ids=$(fetch "${MRPC_SOURCES[2]}")
  mkdir -p "$dir"
  mv "$train" "$test" "$ids" "$dir/"
  "$PY" - "$dir" <<'PYEOF' || die "MRPC: could not build train/dev/test.tsv from the MSR files"
"""Split the MSR paraphrase files into GLUE's MRPC train/dev/test.tsv as the GLUE download script does."""
import sys
from pathlib import Path

folder = Path(sys.argv[1])
dev_ids = {tuple(line.strip().split("\t")) for line in (folder / "dev_ids.tsv").open(encoding="utf-8")}
with (folder / "msr_paraphrase_train.txt").open(encoding="utf-8") as source:
    header = source.readline()
    train, dev = [header], [header]
    for row in source:
        label, id1, id2, s1, s2 = row.strip().split("\t")
        (dev if (id1, id2) in dev_ids else train).append(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
with (folder / "msr_paraphrase_test.txt").open(encoding="utf-8") as source:
    source.readline()
    test = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"]
    for index, row in enumerate(source):
        _, id1, id2, s1, s2 = row.strip().split("\t")
        test.append(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")
for name, lines in (("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)):
    (folder / name).write_text("".join(lines), encoding="utf-8")
PYEOF
}

glue_from_web() {
  local task entry file tmp="$DL/tmp.glue"
  for task in "${SELECTED_GLUE[@]}"; do
    if is_done "$task" "$DATA_DIR/$task"; then skip_note "$task" "$DATA_DIR/$task"; continue; fi
    say "GLUE $task"
    rm -rf "$tmp"
    if [ "$task" = MRPC ]; then
      build_mrpc "$tmp"
    elif [ "$task" = diagnostic ]; then
      file=$(fetch "${GLUE_SOURCES[8]}")
      mkdir -p "$tmp" && mv "$file" "$tmp/diagnostic.tsv"
    else
      for entry in "${GLUE_SOURCES[@]}"; do
        [ "${entry%%|*}" = "$task" ] || continue
        file=$(fetch "$entry")
        unzip_to "$file" "$tmp.zip"
        mv "$(top_folder "$tmp.zip")" "$tmp"
        rm -rf "$tmp.zip" "$file"
      done
    fi
    place "$tmp" "$DATA_DIR/$task"
    mark_done "$task" downloaded
  done
}

glue_from_dir() {
  local task src copied=0 absent=()
  for task in "${SELECTED_GLUE[@]}"; do
    src=""
    for candidate in "$FROM/glue/$task" "$FROM/$task"; do [ -d "$candidate" ] && { src=$candidate; break; }; done
    if [ -z "$src" ]; then absent+=("$task"); continue; fi
    copy_tree "$src" "$DATA_DIR/$task"
    copied=$((copied + 1))
  done
  [ $copied -gt 0 ] || { missing "no GLUE task folder in $FROM (looked for $FROM/glue/<Task> and $FROM/<Task>)"; return 0; }
  [ ${#absent[@]} -eq 0 ] || echo "download.sh: note: not in $FROM: ${absent[*]}" >&2
}

# ---- SciTail, SNLI, CoNLL-2003, SQuAD ----------------------------------------------------------
zip_set() {  # zip_set NAME SOURCE DEST
  local tmp="$DL/tmp.$1" file
  if is_done "$1" "$3"; then skip_note "$1" "$3"; return 0; fi
  say "$1"
  file=$(fetch "$2")
  unzip_to "$file" "$tmp"
  place "$(top_folder "$tmp")" "$3"
  rm -rf "$tmp" "$file"
  mark_done "$1" downloaded
}

files_set() {  # files_set NAME DEST_ROOT SOURCE...: files whose names are paths under DEST_ROOT
  local name=$1 root=$2 entry file
  shift 2
  if is_done "$name" "$root/${1%%|*}"; then skip_note "$name" "$root"; return 0; fi
  say "$name"
  for entry in "$@"; do
    file=$(fetch "$entry")
    mkdir -p "$(dirname "$root/${entry%%|*}")"
    mv "$file" "$root/${entry%%|*}"
  done
  mark_done "$name" downloaded
}

from_dir_set() {  # from_dir_set DEST_NAME CANDIDATE...: copy the first candidate folder found in FROM
  local dest=$1 candidate
  shift
  for candidate in "$@"; do
    if [ -d "$FROM/$candidate" ]; then copy_tree "$FROM/$candidate" "$DATA_DIR/$dest"; return 0; fi
  done
  return 1
}

get_scitail() {
  if [ -n "$FROM" ]; then
    from_dir_set SciTail SciTail SciTailV1.1 || missing "no SciTail in $FROM (looked for SciTail/, SciTailV1.1/)"
    from_dir_set domain_adaptation domain_adaptation || true
  else
    zip_set SciTail "$SCITAIL_SOURCE" "$DATA_DIR/SciTail"
    # Upstream also fetched prebuilt training subsets (data/domain_adaptation); that file is no longer
    # public, and domain_prepro.py writes the same 0.1/1/10 % subsets itself.
  fi
}

get_snli() {
  if [ -n "$FROM" ]; then
    local any=0
    from_dir_set snli_1.0 snli_1.0 && any=1
    from_dir_set SNLI SNLI && any=1
    [ $any = 1 ] || missing "no SNLI in $FROM (looked for snli_1.0/, SNLI/)"
  else
    zip_set snli_1.0 "$SNLI_SOURCE" "$DATA_DIR/snli_1.0"
  fi
}

get_ner() {
  if [ -n "$FROM" ]; then
    from_dir_set ner ner conll2003 || missing "no CoNLL-2003 in $FROM (looked for ner/, conll2003/)"
  else
    files_set ner "$DATA_DIR/ner" "${NER_SOURCES[@]}"
  fi
}

get_squad() {
  if [ -n "$FROM" ]; then
    local any=0
    from_dir_set squad squad && any=1
    from_dir_set squad_v2 squad_v2 && any=1
    [ $any = 1 ] || missing "no SQuAD in $FROM (looked for squad/, squad_v2/)"
  else
    files_set squad "$DATA_DIR" "${SQUAD_SOURCES[0]}" "${SQUAD_SOURCES[1]}"
    files_set squad_v2 "$DATA_DIR" "${SQUAD_SOURCES[2]}" "${SQUAD_SOURCES[3]}"
  fi
}

# ---- encoders ----------------------------------------------------------------------------------
get_models() {
  if [ -n "$FROM" ]; then
    local root model copied=0
    for root in "$FROM/models" "$FROM/mt_dnn_models" "$FROM"; do
      for model in "$root"/*/; do
        [ -f "$model/config.json" ] || continue
        model=${model%/}
        copy_tree "$model" "mt_dnn_models/$(basename "$model")"
        copied=$((copied + 1))
      done
      [ $copied -eq 0 ] || return 0
    done
    missing "no model folder (with config.json) in $FROM/models, $FROM/mt_dnn_models or $FROM"
    return 0
  fi
  say "models -> the Hugging Face cache: ${MODELS//,/ }"
  "$PY" - "$MODELS" <<'PYEOF' || exit 1
"""Fetch each model's PyTorch weights, config and tokenizer files into the Hugging Face cache."""
import os
import sys
import urllib.error
import urllib.request

try:
    from huggingface_hub import HfApi, constants, snapshot_download
except ImportError:
    sys.exit(f"download.sh: error: huggingface_hub is not importable by {sys.executable} (run `make venv` first)")

if constants.HF_HUB_OFFLINE:
    sys.exit("download.sh: error: HF_HUB_OFFLINE is set: unset it to download models")
# One quick probe, so that an offline machine fails at once instead of after the hub client's retries.
try:
    urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"),
                           timeout=float(os.environ.get("MTDNN_CONNECT_TIMEOUT", "10")))
except urllib.error.HTTPError:
    pass  # the server answered
except (urllib.error.URLError, OSError) as exc:
    reason = getattr(exc, "reason", exc)
    sys.exit(f"download.sh: error: cannot reach {constants.ENDPOINT} ({reason}): offline? "
             "copy local model folders with --from DIR, or set HF_ENDPOINT to a mirror")

OTHER_FRAMEWORKS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite", "*.mlmodel", "onnx/*", "openvino/*",
                    "coreml/*", "tf_model*", "flax_model*", "rust_model*", "model.ckpt*"]
for name in filter(None, (part.strip() for part in sys.argv[1].split(","))):
    try:
        files = HfApi().list_repo_files(name)
        ignore = OTHER_FRAMEWORKS + (["pytorch_model*.bin"] if any(f.endswith(".safetensors") for f in files) else [])
        path = snapshot_download(name, ignore_patterns=ignore)
    except Exception as exc:  # one line, whatever the hub client raised
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"download.sh: error: model {name}: {reason} (offline? copy local folders with --from DIR)")
    print(f"   {name} -> {path}")
PYEOF
  echo "   the original MT-DNN checkpoints (mt_dnn_base/large) are no longer published; use the ids above"
}

# ---- main --------------------------------------------------------------------------------------
for set in "${SETS[@]}"; do
  case "$set" in
    glue) if [ -n "$FROM" ]; then glue_from_dir; else glue_from_web; fi ;;
    scitail) get_scitail ;;
    snli) get_snli ;;
    ner) get_ner ;;
    squad) get_squad ;;
    models) get_models ;;
  esac
done
rm -rf "$DL"/tmp.*
say "done: ${SETS[*]} (data sets in $DATA_DIR)"
