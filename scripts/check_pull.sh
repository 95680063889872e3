#!/usr/bin/env bash
# `make pull` end to end on the real default pipeline, against a scratch store: push this checkout's
# outputs (after `make repro`) to a local scratch remote, clone the committed HEAD beside this checkout,
# `make pull REMOTE=scratch` there, require `dvc status` up to date, and require `tallrec score` with the
# pulled adapter to write the same bytes as here. Usage: bash scripts/check_pull.sh [users.jsonl]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STORE=$(mktemp -d /tmp/tallrec-scratch-store.XXXXXX)
CLONE="$ROOT/../.tallrec-pullcheck"
USERS=${1:-$ROOT/tests/fixtures/users.jsonl}
ADAPTER=models/rec/smollm2-135m/tallrec_movie_k64_seed0
cd "$ROOT"
.venv/bin/dvc remote add --local -f scratch "$STORE"
.venv/bin/dvc remote modify --local scratch verify true
.venv/bin/dvc push -q -r scratch
echo "pushed $(find "$STORE" -type f | wc -l) objects to $STORE"
.venv/bin/tallrec score --adapter "$ADAPTER" --input "$USERS" --output "$STORE.here.jsonl" --dtype fp32
rm -rf "$CLONE"
git clone -q "$ROOT" "$CLONE"
cd "$CLONE"
"$ROOT/.venv/bin/dvc" remote add --local scratch "$STORE"
"$ROOT/.venv/bin/dvc" remote modify --local scratch verify true
make pull REMOTE=scratch
.venv/bin/dvc status
.venv/bin/tallrec score --adapter "$ADAPTER" --input "$USERS" --output "$STORE.pulled.jsonl" --dtype fp32
cmp "$STORE.here.jsonl" "$STORE.pulled.jsonl"
echo "tallrec score: the pulled adapter's output is byte-identical to the original's"
cd "$ROOT" && .venv/bin/dvc remote remove --local scratch && rm -rf "$CLONE" "$STORE" "$STORE".*.jsonl
