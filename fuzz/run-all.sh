#!/usr/bin/env bash
# Runs every fuzz target (or those named) one after the other, one job each, from the seed corpora (written
# first by the `seeds` binary from the unit tests' vectors and the shared devargs table).
#   fuzz/run-all.sh [-runs=N | -max_total_time=S] [target ...]     (default -runs=10000000, all targets)
# FUZZ_SANITIZER=none|address (default address) picks cargo-fuzz's sanitizer. Each target's libFuzzer output goes
# to fuzz/logs/<target>.log; its final lines ("Done N runs in S second(s)", stat::number_of_executed_units) give
# the execution count. A crash stops the run (exit 1) with the reproducer under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
limit="${1:--runs=10000000}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ring_reader nvsp rndis rx_transfer devargs)
san="${FUZZ_SANITIZER:-address}"
mkdir -p logs
cargo +nightly fuzz build -s "$san"
target/x86_64-unknown-linux-gnu/release/seeds corpus
for t in "${targets[@]}"; do
  echo "==> fuzz $t ($limit, sanitizer $san)"
  rm -f fuzz-0.log
  status=0
  cargo +nightly fuzz run -s "$san" "$t" "corpus/$t" -- "$limit" -jobs=1 -workers=1 -print_final_stats=1 \
    >"logs/$t.log" 2>&1 || status=$?
  if [[ -f fuzz-0.log ]]; then cat fuzz-0.log >>"logs/$t.log"; rm -f fuzz-0.log; fi
  if [[ $status -ne 0 ]] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: libFuzzer)|panicked at' "logs/$t.log"; then
    echo "fuzz $t FAILED (status $status); reproducer under fuzz/artifacts/$t/:" >&2
    tail -40 "logs/$t.log" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "logs/$t.log" | tail -2
done
