#!/usr/bin/env bash
# Runs every fuzz target for a number of executions (default 10 M) or seconds, one after the other, one job each,
# from the seed corpora (written first). Usage: fuzz/run-all.sh [-runs=N | -max_total_time=S] [target ...]
# Each target's libFuzzer output goes to fuzz/logs/<target>.log; its final lines give the execution count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
limit="${1:--runs=10000000}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ring_reader nvsp rndis rx_transfer devargs)
mkdir -p logs
cargo +nightly fuzz build
"target/x86_64-unknown-linux-gnu/release/seeds" corpus
for t in "${targets[@]}"; do
  echo "==> fuzz $t ($limit)"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- "$limit" -jobs=1 -workers=1 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    cat "fuzz-0.log" >>"logs/$t.log" 2>/dev/null || true
    echo "fuzz $t FAILED; see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
    tail -40 "logs/$t.log" >&2
    exit 1
  fi
  [[ -f fuzz-0.log ]] && { cat fuzz-0.log >>"logs/$t.log"; rm -f fuzz-0.log; }
  grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec' "logs/$t.log" | tail -3
done
