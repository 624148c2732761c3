#!/usr/bin/env bash
# Runs every fuzz target (or those named) one after the other, one job each, from the seed corpora (written
# first by the `seeds` binary from the unit tests' vectors and the shared devargs table).
#   fuzz/run-all.sh [-runs=N | -max_total_time=S] [target ...]     (default -runs=10000000, all targets)
# FUZZ_SANITIZER=none|address (default address) picks cargo-fuzz's sanitizer; FUZZ_PARALLEL=N runs N targets at once. Each target's libFuzzer output goes
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
for t in "${targets[@]}"; do cargo +nightly fuzz build -s "$san" "$t"; done
# The seed writer is an ordinary program: built without the fuzzing instrumentation (which, without a sanitizer
# runtime to provide its hooks, would not link).
cargo +nightly build --release --bin seeds
target/release/seeds corpus
# One target: its libFuzzer output to logs/<target>.log; non-zero on a crash.
run_one() {
  local t=$1 status=0
  cargo +nightly fuzz run -s "$san" "$t" "corpus/$t" -- "$limit" -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"logs/$t.log" 2>&1 || status=$?
  if [[ $status -ne 0 ]] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: libFuzzer)|panicked at' "logs/$t.log"; then
    echo "fuzz $t FAILED (status $status); reproducer under fuzz/artifacts/$t/:" >&2
    tail -40 "logs/$t.log" >&2
    return 1
  fi
  echo "==> fuzz $t ($limit, sanitizer $san): $(grep -E '^Done [0-9]+ runs' "logs/$t.log" | tail -1)"
  grep -E 'stat::number_of_executed_units' "logs/$t.log" | tail -1
}
# FUZZ_PARALLEL=N runs N targets at a time (default 1).
par="${FUZZ_PARALLEL:-1}"
failed=0
pids=()
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  run_one "$t" &
  pids+=($!)
  if [[ ${#pids[@]} -ge $par ]]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit $failed
