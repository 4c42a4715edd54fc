#!/usr/bin/env bash
# Reproduce the paper's two-stage GLUE experiment (MTL refinement → fine-tuning) with MiniLM on the
# offline GLUE copy; resumable: run it again after a stop and it goes on where it was.
#
#   bash scripts/reproduce_glue.sh                                   # the whole plan, then docs/results.md
#   bash scripts/reproduce_glue.sh --dry_run                         # the plan and its estimated time only
#   bash scripts/reproduce_glue.sh --only a,b --tasks rte --seeds 2018
#
# Every flag goes to scripts/reproduce_glue.py (--help lists them); hyper-parameters are in
# scripts/reproduce_glue.yml. Threads per run: --threads N or OMP_NUM_THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python scripts/reproduce_glue.py "$@"
