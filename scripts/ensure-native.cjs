#!/usr/bin/env node
// Makes sure the native addon next to binding.js exists, loads, and is not older than the Rust sources.
// Run by `npm install` (the `install` and `prepare` hooks) and by `npm test`. It builds from source with `napi build`
// (in a clone) or plain cargo (installed from the registry) when the addon is missing, fails to load, or is stale, and
// exits non-zero with a one-line reason when that build fails.
//
// No matching prebuilt package (netvsc-<platform>) and no `cargo`: one warning line, exit 0. The install goes on, so
// `netvsc --help`/`--version` work, and using the driver says in one line what to install.
//
// Environment: NETVSC_SKIP_NATIVE_BUILD=1 skips everything; NETVSC_NATIVE_PROFILE=debug builds without --release.
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const tag = '[netvsc ensure-native]'

function log(msg) {
  process.stderr.write(`${tag} ${msg}\n`)
}

function fail(msg) {
  log(`ERROR: ${msg}`)
  process.exit(1)
}

/** Not fatal: the package installs without its addon (the CLI's --help works; the API says what is missing). */
function warnAndExit(msg) {
  log(`WARNING: ${msg}`)
  process.exit(0)
}

/** The file name the generated loader looks for first (`netvsc.<platform>-<arch>-<abi>.node`). */
function addonFileName() {
  if (process.platform !== 'linux') return null
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch]
  if (!arch) return null
  const glibc = Boolean(process.report && process.report.getReport().header.glibcVersionRuntime)
  return `netvsc.linux-${arch}-${glibc ? 'gnu' : 'musl'}.node`
}

/** Newest modification time (ms) of the inputs of the addon build. */
function newestSourceMtime() {
  let newest = 0
  const consider = (file) => {
    try {
      newest = Math.max(newest, fs.statSync(file).mtimeMs)
    } catch {
      // A missing optional input (e.g. no Cargo.lock yet) does not make the addon stale.
    }
  }
  consider(path.join(root, 'Cargo.toml'))
  consider(path.join(root, 'Cargo.lock'))
  const walk = (dir) => {
    let entries
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) {
        if (e.name !== 'target' && e.name !== 'node_modules') walk(p)
      } else if (e.name.endsWith('.rs') || e.name === 'Cargo.toml' || e.name.endsWith('.c') || e.name.endsWith('.h')) {
        consider(p)
      }
    }
  }
  walk(path.join(root, 'crates'))
  return newest
}

/** Loads binding.js in a child process (so a crash or a cached failure cannot affect us); returns the error text. */
function probeLoad() {
  const r = spawnSync(process.execPath, ['-e', "require('./binding.js').nativeVersion()"], {
    cwd: root,
    encoding: 'utf8',
  })
  if (r.status === 0) return null
  const lines = `${r.stderr || ''}`.split('\n').filter((l) => /Error|Cannot/.test(l))
  return lines[0] || `exit status ${r.status}`
}

/** In a clone: `napi build`, which also regenerates binding.js and binding.d.ts. */
function buildWithNapi(debug) {
  const script = debug ? 'build:native:debug' : 'build:native'
  const npm = process.env.npm_execpath
  const build = npm
    ? spawnSync(process.execPath, [npm, 'run', script], { cwd: root, stdio: 'inherit' })
    : spawnSync('npm', ['run', script], { cwd: root, stdio: 'inherit' })
  if (build.error || build.status !== 0) {
    fail(`building the native addon failed (npm run ${script} exited ${build.status}); see the cargo output above`)
  }
}

/** Installed from the registry (no devDependencies): plain cargo, then copy the library next to binding.js. */
function buildWithCargo(debug, addon) {
  const args = ['build', '--manifest-path', 'crates/netvsc-node/Cargo.toml', '-p', 'netvsc-node']
  if (!debug) args.push('--release')
  // A user's build needs neither the line tables the workspace's release profile keeps nor symbols: 1.6 MB, not 13.
  const env = { ...process.env, CARGO_PROFILE_RELEASE_DEBUG: '0', CARGO_PROFILE_RELEASE_STRIP: 'symbols' }
  const build = spawnSync('cargo', args, { cwd: root, stdio: 'inherit', env })
  if (build.error || build.status !== 0) {
    fail(`building the native addon failed (cargo ${args.join(' ')} exited ${build.status}); see the output above`)
  }
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target')
  const lib = path.join(targetDir, debug ? 'debug' : 'release', 'libnetvsc_node.so')
  if (!fs.existsSync(lib)) fail(`cargo succeeded but ${lib} does not exist`)
  fs.copyFileSync(lib, addon)
}

function main() {
  if (process.env.NETVSC_SKIP_NATIVE_BUILD) {
    log('NETVSC_SKIP_NATIVE_BUILD is set: not checking or building the native addon')
    return
  }
  if (process.env.npm_config_ignore_scripts === 'true') return
  const cmd = process.env.npm_command
  if (cmd === 'pack' || cmd === 'publish') return

  const file = addonFileName()
  if (!file) {
    warnAndExit(`no native addon for ${process.platform}/${process.arch}: netvsc drives a Linux VMBus device (x64/arm64 only)`)
  }
  const addon = path.join(root, file)

  // A local addon older than the sources is rebuilt; a missing one is fine if the loader finds a prebuilt
  // package (netvsc-<platform>) instead.
  let reason = null
  if (fs.existsSync(addon)) {
    if (fs.statSync(addon).mtimeMs < newestSourceMtime()) {
      reason = `${file} is older than the Rust sources`
    } else {
      const err = probeLoad()
      if (err) reason = `${file} does not load (${err})`
    }
  } else if (probeLoad() !== null) {
    reason = `${file} is missing and no prebuilt package matches this platform`
  }
  if (!reason) return

  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
  if (cargo.error || cargo.status !== 0) {
    warnAndExit(
      `no prebuilt addon matches this machine (${file.replace(/^netvsc\.|\.node$/g, '')}) and cargo is not on PATH, so netvsc ` +
        'is installed without its native addon: install Rust >= 1.88 (https://rustup.rs) and run `npm rebuild netvsc`',
    )
  }

  const debug = process.env.NETVSC_NATIVE_PROFILE === 'debug'
  log(`${reason}: building it from source (${debug ? 'debug' : 'release'}) with ${cargo.stdout.trim()}`)
  if (fs.existsSync(path.join(root, 'node_modules/@napi-rs/cli/package.json'))) {
    buildWithNapi(debug)
  } else {
    buildWithCargo(debug, addon)
  }
  const err = probeLoad()
  if (err) fail(`the freshly built ${file} does not load: ${err}`)
  log(`built ${file}`)
}

main()
