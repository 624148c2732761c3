#!/usr/bin/env bash
# The release workflow's build job (.github/workflows/release.yml), run here: every target in napi.targets
# cross-built with cargo-zigbuild against the glibc floor, stripped, then checked as the workflow checks it
# (architecture, no symbol/debug sections, highest GLIBC_ symbol version <= the floor; musl: no glibc at all).
#   scripts/release-local.sh [platform ...]      (default: all four; artifacts in artifacts/)
# Needs: rustup targets for each platform, zig (the `ziglang` PyPI package or zig on PATH) and cargo-zigbuild
# (`cargo install cargo-zigbuild --locked`). Not part of CI (four release builds take a while on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GLIBC_FLOOR=2.28
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TERM_COLOR=never

# platform target zig_target machine (the workflow's matrix)
matrix=(
  "linux-x64-gnu x86_64-unknown-linux-gnu x86_64-unknown-linux-gnu.$GLIBC_FLOOR X86-64"
  "linux-arm64-gnu aarch64-unknown-linux-gnu aarch64-unknown-linux-gnu.$GLIBC_FLOOR AArch64"
  "linux-x64-musl x86_64-unknown-linux-musl x86_64-unknown-linux-musl X86-64"
  "linux-arm64-musl aarch64-unknown-linux-musl aarch64-unknown-linux-musl AArch64"
)
want=("$@")

fail() { echo "release-local: $*" >&2; exit 1; }
command -v cargo-zigbuild >/dev/null || fail "cargo-zigbuild is missing (cargo install cargo-zigbuild --locked)"
command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1 \
  || fail "zig is missing (pip install ziglang, or zig on PATH)"

mkdir -p artifacts
for row in "${matrix[@]}"; do
  read -r platform target zig_target machine <<<"$row"
  if [[ ${#want[@]} -gt 0 && ! " ${want[*]} " == *" $platform "* ]]; then continue; fi
  rustup target list --installed | grep -qx "$target" || fail "rustup target $target is not installed"
  echo "==> $platform ($zig_target)"
  start=$(date +%s)
  flags=""
  # A cdylib loaded by a dynamically linked node must not carry its own static musl.
  if [[ $target == *musl ]]; then flags="-C target-feature=-crt-static"; fi
  RUSTFLAGS="$flags" cargo zigbuild --release --locked --manifest-path crates/netvsc-node/Cargo.toml \
    -p netvsc-node --target "$zig_target" --target-dir target/release-local
  f="artifacts/netvsc.$platform.node"
  cp "target/release-local/$target/release/libnetvsc_node.so" "$f"
  readelf -h "$f" | grep -q "Machine:.*$machine" || fail "$f is not $machine"
  if readelf -S "$f" | grep -Eq '\.(symtab|debug_info)'; then fail "$f is not stripped"; fi
  need=$( (readelf --dyn-syms -W -V "$f" | grep -o 'GLIBC_[0-9][0-9.]*' || true) | sed 's/GLIBC_//' | sort -uV | tail -n1)
  if [[ $target == *gnu ]]; then
    [[ $(printf '%s\n%s\n' "$need" "$GLIBC_FLOOR" | sort -V | tail -n1) == "$GLIBC_FLOOR" ]] \
      || fail "$f needs glibc $need, above the floor $GLIBC_FLOOR"
    libc="glibc >= ${need:-none} (floor $GLIBC_FLOOR)"
  else
    [[ -z $need ]] || fail "the musl build references glibc $need"
    libc="musl ($(readelf -d "$f" | grep -o 'NEEDED.*\[[^]]*\]' | sed 's/.*\[//; s/\]//' | tr '\n' ' '))"
  fi
  printf '%s: %s bytes, %s, %s, %ss\n' "$platform" "$(stat -c %s "$f")" "$machine" "$libc" "$(( $(date +%s) - start ))"
done
