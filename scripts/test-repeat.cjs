#!/usr/bin/env node
// Runs the suites N times in a row and stops at the first failure: `npm run test:repeat -- [N] [--rust] [--ava]
// [--load] [-- extra ava args]`. Default N = 20, both suites. `--load` keeps one core busy with a spinning child
// process for the whole run (flakes show under load). Rust test binaries are built once, before the first run.
'use strict'
const { spawn, spawnSync } = require('node:child_process')

const args = process.argv.slice(2)
const dash = args.indexOf('--')
const avaExtra = dash >= 0 ? args.slice(dash + 1) : []
const own = dash >= 0 ? args.slice(0, dash) : args
let runs = 20
let rust = false
let ava = false
let load = false
for (const a of own) {
  if (/^\d+$/.test(a)) runs = Number(a)
  else if (a === '--rust') rust = true
  else if (a === '--ava') ava = true
  else if (a === '--load') load = true
  else {
    console.error(`test:repeat: unknown argument '${a}' (usage: npm run test:repeat -- [N] [--rust] [--ava] [--load] [-- ava args])`)
    process.exit(2)
  }
}
if (!rust && !ava) rust = ava = true
if (runs < 1) {
  console.error('test:repeat: N must be at least 1')
  process.exit(2)
}

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit' })
  return r.status === 0
}

let spinner = null
if (load) {
  spinner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
  console.log(`test:repeat: load: busy loop in pid ${spinner.pid}`)
}
process.on('exit', () => spinner?.kill('SIGKILL'))

if (rust && !run('cargo', ['test', '--workspace', '--no-run', '-q'])) process.exit(1)
const started = Date.now()
let passed = 0
for (let i = 1; i <= runs; i++) {
  const t0 = Date.now()
  const ok = (!rust || run('cargo', ['test', '--workspace', '-q'])) && (!ava || run('npx', ['ava', ...avaExtra]))
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  if (!ok) {
    console.log(`test:repeat: run ${i}/${runs} FAILED after ${secs} s (${passed} clean runs before it)`)
    process.exit(1)
  }
  passed++
  console.log(`test:repeat: run ${i}/${runs} ok (${secs} s)`)
}
console.log(`test:repeat: ${passed} of ${runs} runs clean in ${((Date.now() - started) / 1000).toFixed(0)} s`)
