#!/usr/bin/env bash
# Local proof of the prebuilt-binary path (run by .ci/run after `npm install`; `npm run pack:proof`):
#  1. builds the x86_64-unknown-linux-gnu addon (release; a no-op after `npm install` built it), strips it, measures
#     its glibc floor, and puts it into npm/linux-x64-gnu the way the release workflow does (`napi artifacts`), in a
#     scratch copy of the package so the work tree stays clean; `napi prepublish -t npm --dry-run` accepts the layout;
#  2. `npm pack`s that platform package and the main package;
#  3. installs both into an empty project with a PATH that holds only node, npm and a shell (no cargo), offline,
#     then runs `netvsc --version`, `netvsc demo` and a TypeScript consumer compiled by tsc (module nodenext) as
#     CommonJS (.cts) and as an ES module (.mts);
#  4. installs the main package alone (no matching binary, no cargo): the install succeeds printing one warning line
#     and no stack trace, `netvsc --help` and `--version` work, and a command that needs the addon fails with one line.
# Everything happens under a temporary directory, removed at the end. Exit status 0 when every check held.
# NETVSC_PROOF_ADDON=FILE proves a given x64-gnu addon (the release workflow's) instead of building one.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/netvsc-pack-proof.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '[pack-proof] %s\n' "$*"; }
fail() { printf '[pack-proof] FAILED: %s\n' "$*" >&2; exit 1; }
version=$(node -p 'require("./package.json").version')
napi="$repo/node_modules/.bin/napi"
[[ -x $napi ]] || fail "run npm install first ($napi is missing)"

# 1. The x64-gnu addon, release and stripped (NETVSC_PROOF_ADDON=FILE: use that one, e.g. the release workflow's).
if [[ -n ${NETVSC_PROOF_ADDON:-} ]]; then
  lib=$NETVSC_PROOF_ADDON
  step "using the prebuilt addon $lib"
else
  step "cargo build --release -p netvsc-node (x86_64-unknown-linux-gnu)"
  cargo build --release --locked --quiet --manifest-path crates/netvsc-node/Cargo.toml -p netvsc-node
  lib="${CARGO_TARGET_DIR:-$repo/target}/release/libnetvsc_node.so"
fi
[[ -f $lib ]] || fail "$lib does not exist"
mkdir -p "$work/pkg/artifacts"
cp package.json "$work/pkg/"
cp -r npm "$work/pkg/npm"
addon="$work/pkg/artifacts/netvsc.linux-x64-gnu.node"
cp "$lib" "$addon"
strip --strip-unneeded "$addon"
floor=$( (objdump -T "$addon" | grep -o 'GLIBC_[0-9][0-9.]*' || true) | sed 's/GLIBC_//' | sort -uV | tail -n1)
step "addon: $(stat -c %s "$lib") B as built, $(stat -c %s "$addon") B stripped; needs glibc >= $floor (the glibc of the toolchain that built it; the release workflow pins 2.28)"
# `napi artifacts` moves <binaryName>.<platform>.node files into npm/<platform>; here only x64-gnu exists, so a config
# naming just that target (napi artifacts refuses a run where a configured target has no artifact).
echo '{"binaryName":"netvsc","targets":["x86_64-unknown-linux-gnu"]}' > "$work/pkg/napi-x64-gnu.json"
(cd "$work/pkg" && "$napi" artifacts -c napi-x64-gnu.json -d artifacts --npm-dir npm >/dev/null 2>&1) || fail "napi artifacts failed"
[[ -f $work/pkg/npm/linux-x64-gnu/netvsc.linux-x64-gnu.node ]] || fail "napi artifacts did not fill npm/linux-x64-gnu"
(cd "$work/pkg" && git init -q && git add -A && git -c user.name=proof -c user.email=proof@invalid commit -qm "v$version" \
  && "$napi" prepublish -t npm --no-gh-release --dry-run -c napi-x64-gnu.json >/dev/null 2>&1) || fail "napi prepublish -t npm --dry-run failed"

# 2. The two tarballs.
step "npm pack: platform package and main package"
plat_tgz=$(cd "$work/pkg/npm/linux-x64-gnu" && npm pack --silent --pack-destination "$work" | tail -n1)
main_tgz=$(npm pack --silent --ignore-scripts --pack-destination "$work" | tail -n1)
step "$plat_tgz: $(stat -c %s "$work/$plat_tgz") B; $main_tgz: $(stat -c %s "$work/$main_tgz") B"
# The Rust sources in the main tarball are a workspace cargo can load (every manifest parses, the lock matches), which
# is what its from-source fallback builds; `cargo metadata` checks that in a second, without compiling.
if command -v cargo >/dev/null; then
  mkdir -p "$work/src" && tar -xzf "$work/$main_tgz" -C "$work/src"
  cargo metadata --locked --format-version 1 --manifest-path "$work/src/package/Cargo.toml" >/dev/null \
    || fail "the Rust sources in $main_tgz do not form a loadable cargo workspace"
  step "the tarball's Rust workspace loads (cargo metadata --locked)"
fi

# 3. A PATH without cargo: node, npm, npx and the few tools npm and the scripts run.
bin="$work/bin"
mkdir -p "$bin"
for tool in node npm npx sh bash env cat ls mkdir rm cp mv ln chmod uname dirname basename sed grep timeout; do
  p=$(command -v "$tool") || fail "$tool is not installed"
  ln -s "$(readlink -f "$p")" "$bin/$tool"
done
# npm and npx are scripts that find their own files relative to themselves: link them to their real locations.
ln -sf "$(readlink -f "$(command -v npm)")" "$bin/npm"
ln -sf "$(readlink -f "$(command -v npx)")" "$bin/npx"
nocargo() { env -i HOME="$HOME" PATH="$bin" TMPDIR="${TMPDIR:-/tmp}" npm_config_fund=false npm_config_audit=false \
  npm_config_update_notifier=false npm_config_cache="${npm_config_cache:-$HOME/.npm}" "$@"; }
nocargo sh -c 'command -v cargo' >/dev/null 2>&1 && fail "cargo is still reachable on the proof PATH"

step "install both tarballs into an empty project (offline, no cargo on PATH)"
app="$work/app"
mkdir -p "$app"
(cd "$app" && nocargo npm init -y >/dev/null && nocargo npm install --offline --no-audit --no-fund "$work/$plat_tgz" "$work/$main_tgz" >"$work/install.log" 2>&1) \
  || { cat "$work/install.log"; fail "npm install of the two tarballs failed"; }
[[ -f $app/node_modules/netvsc-linux-x64-gnu/netvsc.linux-x64-gnu.node ]] || fail "the platform package is not installed"
[[ ! -e $app/node_modules/netvsc/netvsc.linux-x64-gnu.node ]] || fail "the install built an addon from source"

got=$(cd "$app" && nocargo npx --offline netvsc --version) || fail "netvsc --version failed"
[[ $got == "$version" ]] || fail "netvsc --version printed '$got', not $version"
step "npx netvsc --version: $got"
(cd "$app" && nocargo timeout 60 npx --offline netvsc demo --seconds 1 --queues 1 >"$work/demo.log" 2>&1) \
  || { cat "$work/demo.log"; fail "netvsc demo failed"; }
grep -q 'Mpps' "$work/demo.log" || { cat "$work/demo.log"; fail "netvsc demo printed no rate"; }
step "npx netvsc demo: $(grep 'Mpps' "$work/demo.log" | tail -n1)"

# The TypeScript consumer: the same program as CommonJS and as an ES module, compiled by tsc with module nodenext.
mkdir -p "$app/node_modules/@types"
ln -s "$repo/node_modules/@types/node" "$app/node_modules/@types/node"
cat >"$app/tsconfig.json" <<'EOF'
{ "compilerOptions": { "module": "nodenext", "moduleResolution": "nodenext", "target": "es2022", "strict": true,
    "types": ["node"], "skipLibCheck": false, "outDir": "out" }, "files": ["consumer.cts", "consumer.mts"] }
EOF
body='
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "netvsc-consumer-"))
const emu: Emulator = new Emulator({ dir, backend: "loopback" })
try {
  const devices: VmbusDevice[] = listDevices({ root: dir })
  const nic = devices.find((d) => d.uuid === emu.uuid)
  if (!nic || !nic.isNetvsc) throw new Error("the emulated NIC is not listed")
  const devargs = parseDevargs("latency=50")
  console.log(`${KIND} ok: addon ${nativeVersion()}, ${devices.length} device(s), latency ${devargs.latency}`)
} finally {
  emu.stop()
  fs.rmSync(dir, { recursive: true, force: true })
}
'
{
  echo 'import * as fs from "node:fs"; import * as os from "node:os"; import * as path from "node:path"'
  echo 'import { Emulator, listDevices, nativeVersion, parseDevargs, type VmbusDevice } from "netvsc"'
  echo 'const KIND = typeof require === "function" ? "cjs" : "esm"'
  echo "$body"
} >"$app/consumer.cts"
{
  echo 'import * as fs from "node:fs"; import * as os from "node:os"; import * as path from "node:path"'
  echo 'import netvsc, { Emulator, listDevices, nativeVersion, parseDevargs, type VmbusDevice } from "netvsc"'
  echo 'if (netvsc.nativeVersion !== nativeVersion) throw new Error("the default export is another instance")'
  echo 'const KIND = typeof require === "function" ? "cjs" : "esm"'
  echo "$body"
} >"$app/consumer.mts"
step "tsc (module nodenext): consumer.cts and consumer.mts"
(cd "$app" && nocargo node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.json) || fail "tsc could not compile the consumer"
cjs=$(cd "$app" && nocargo node out/consumer.cjs) || fail "node out/consumer.cjs failed"
esm=$(cd "$app" && nocargo node out/consumer.mjs) || fail "node out/consumer.mjs failed"
[[ $cjs == "cjs ok:"* && $esm == "esm ok:"* ]] || fail "unexpected consumer output: '$cjs' / '$esm'"
step "node out/consumer.cjs: $cjs"
step "node out/consumer.mjs: $esm"

# 4. No matching binary and no cargo.
step "install the main package alone (no prebuilt binary, no cargo)"
bare="$work/bare"
mkdir -p "$bare"
(cd "$bare" && nocargo npm init -y >/dev/null && nocargo npm install --offline --foreground-scripts --no-audit --no-fund "$work/$main_tgz" >"$work/bare.log" 2>&1) \
  || { cat "$work/bare.log"; fail "npm install without a binary and without cargo failed (it must warn and go on)"; }
ours=$(grep -c '\[netvsc ensure-native\]' "$work/bare.log" || true)
[[ $ours == 1 ]] || { cat "$work/bare.log"; fail "expected one line from the install script, got $ours"; }
if grep -Eq '^\s+at |Error:|npm error' "$work/bare.log"; then cat "$work/bare.log"; fail "the install printed an error or a stack trace"; fi
step "install said: $(grep '\[netvsc ensure-native\]' "$work/bare.log")"
# The same without --foreground-scripts (npm's default hides a dependency's install output): still no error.
rm -rf "$bare/node_modules" "$bare/package-lock.json"
(cd "$bare" && nocargo npm install --offline --no-audit --no-fund "$work/$main_tgz" >"$work/bare2.log" 2>&1) \
  || { cat "$work/bare2.log"; fail "npm install (background scripts) without a binary and without cargo failed"; }
if grep -Eq '^\s+at |Error:|npm error' "$work/bare2.log"; then cat "$work/bare2.log"; fail "the install printed an error or a stack trace"; fi
(cd "$bare" && nocargo npx --offline netvsc --help >"$work/help.log" 2>&1) || { cat "$work/help.log"; fail "netvsc --help failed without the addon"; }
grep -q '^Usage: netvsc' "$work/help.log" || fail "netvsc --help printed no usage"
[[ $(cd "$bare" && nocargo npx --offline netvsc --version) == "$version" ]] || fail "netvsc --version failed without the addon"
set +e
(cd "$bare" && nocargo npx --offline netvsc list >"$work/list.out" 2>"$work/list.err")
status=$?
set -e
[[ $status == 1 && $(wc -l <"$work/list.err") == 1 ]] || { cat "$work/list.err"; fail "netvsc list without the addon: status $status, want 1 and one line"; }
grep -q 'native addon' "$work/list.err" || fail "netvsc list without the addon does not say the addon is missing"
step "netvsc --help, --version work; netvsc list says: $(cat "$work/list.err")"
step "ok in $((SECONDS - start)) s"
