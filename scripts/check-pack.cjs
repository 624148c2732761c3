#!/usr/bin/env node
// Checks what `npm pack` would put in the main package's tarball (run by .ci/run, and `npm run pack:check`):
//  - the size budget below (packed and unpacked);
//  - nothing from a forbidden path: Rust tests, benches, fuzz targets or interop suites, source maps, built addons,
//    TypeScript sources, CI files, the per-platform packages;
//  - everything a user needs: the CommonJS and ES module entries with their types, the CLI, the loader, LICENSE,
//    README, CHANGELOG, and the sources a from-source build of the addon needs (the workspace manifests and lock,
//    each crate's Cargo.toml and src/, hv-emu's build.rs and interposer C source);
//  - no shipped JavaScript pointing at a source map.
// Prints one summary line; on failure one line per problem, exit 1.
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

/**
 * The budget, in bytes (kB = 1000 B, as npm prints them). The package was 289 kB packed / 1,029 kB unpacked before
 * VF failover (the vf-netdev crate, netvsc/src/vf), telemetry, fault injection and the async API added their
 * sources: 414 kB / 1,468 kB then. The budget leaves about 15 % for growth; a larger jump must be argued here.
 */
const BUDGET = { packed: 540_000, unpacked: 1_900_000 }

const FORBIDDEN = [
  [/(^|\/)tests?\//, 'a test directory'],
  [/(^|\/)benches\//, 'a bench directory'],
  [/(^|\/)fuzz\//, 'a fuzz directory'],
  [/interop|dpdk_probe|(^|\/)rig\//, 'an interop suite'],
  [/\.map$/, 'a source map'],
  [/\.node$/, 'a built addon (those ship in the netvsc-<platform> packages)'],
  [/(^|\/)target\//, 'cargo build output'],
  [/^(src|__test__|benchmark|npm|docs|\.ci|\.github)\//, 'a development-only directory'],
  [/(?<!\.d)\.[cm]?ts$/, 'a TypeScript source'],
]

const root = path.resolve(__dirname, '..')
const crates = fs
  .readdirSync(path.join(root, 'crates'), { withFileTypes: true })
  .filter((e) => e.isDirectory() && fs.existsSync(path.join(root, 'crates', e.name, 'Cargo.toml')))
  .map((e) => e.name)
const REQUIRED = [
  'package.json',
  'LICENSE',
  'README.md',
  'CHANGELOG.md',
  'binding.js',
  'binding.d.ts',
  'dist/index.js',
  'dist/index.d.ts',
  'dist/index.mjs',
  'dist/index.d.mts',
  'dist/cli.js',
  'scripts/ensure-native.cjs',
  'Cargo.toml',
  'Cargo.lock',
  'crates/hv-emu/build.rs',
  'crates/hv-emu/interposer/uio_interposer.c',
  'crates/netvsc-node/build.rs',
  ...crates.flatMap((c) => [`crates/${c}/Cargo.toml`, `crates/${c}/src/lib.rs`]),
]

const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })
if (r.status !== 0) {
  process.stderr.write(`pack-check: npm pack --dry-run failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').pop()}\n`)
  process.exit(1)
}
let report
try {
  report = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))[0]
} catch (err) {
  process.stderr.write(`pack-check: cannot parse the output of npm pack --dry-run --json: ${err.message}\n`)
  process.exit(1)
}
const files = report.files.map((f) => f.path)
const problems = []
for (const f of files) {
  for (const [re, what] of FORBIDDEN) if (re.test(f)) problems.push(`${f}: ${what} must not be in the package`)
}
for (const f of REQUIRED) if (!files.includes(f)) problems.push(`${f}: missing from the package`)
for (const f of files.filter((p) => /\.(c|m)?js$/.test(p))) {
  const text = fs.readFileSync(path.join(root, f), 'utf8')
  if (text.includes('sourceMappingURL=')) problems.push(`${f}: points at a source map the package does not ship`)
}
const kB = (n) => `${(n / 1000).toFixed(1)} kB`
if (report.size > BUDGET.packed) problems.push(`packed size ${kB(report.size)} is over the budget of ${kB(BUDGET.packed)}`)
if (report.unpackedSize > BUDGET.unpacked) {
  problems.push(`unpacked size ${kB(report.unpackedSize)} is over the budget of ${kB(BUDGET.unpacked)}`)
}
const summary = `${report.filename}: ${files.length} files, ${kB(report.size)} packed (budget ${kB(BUDGET.packed)}), ${kB(report.unpackedSize)} unpacked (budget ${kB(BUDGET.unpacked)})`
if (problems.length > 0) {
  for (const p of problems) process.stderr.write(`pack-check: ${p}\n`)
  process.stderr.write(`pack-check: FAILED: ${summary}\n`)
  process.exit(1)
}
process.stdout.write(`pack-check: ok: ${summary}\n`)
