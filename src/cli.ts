#!/usr/bin/env node
/**
 * The `netvsc` command. `netvsc list [--root DIR] [--json]` lists the vmbus devices (netvsc NICs and others) with
 * their uio maps and channels. Exit status: 0 success, 1 the operation failed, 2 bad usage (one line on stderr).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { CommandError, UsageError, parse, rootOption, type Io } from './cli/common.js'
import { NetvscError } from './errors.js'
import { formatDeviceTable } from './format.js'

export const HELP = `Usage: netvsc <command> [options]
       netvsc --version

User-space poll-mode driver for the Hyper-V synthetic NIC (netvsc over uio_hv_generic).

Commands:
  list                      List vmbus devices: NICs and others, uio node, maps, channels
  bind <uuid|iface>         Give a NIC to uio_hv_generic (driverctl or sysfs; --dry-run, --force)
  unbind <uuid>             Give it back to hv_netvsc
  info <uuid|iface>         sysfs facts and what bring-up negotiates
  emulate --dir D           Run the Hyper-V host emulator (--run -- CMD runs a guest against it)
  ctl DIR COMMAND           Runtime command to a running emulator (vf offer|revoke|remove|add|..., link, stats)
  demo                      Emulator + driver in this process: link event, traffic both ways, Mpps
  capture <uuid> --pcap F   Capture a running service's bursts (pcapng, both directions); else this process's rx
  stats <uuid>              Port and per-queue counters of a running service, rates with --watch
  metrics                   Prometheus exporter of every running device (--listen 127.0.0.1:9464)
  xstats <uuid>             DPDK-named extended statistics

Options of list:
  --root DIR        Directory holding sys/bus/vmbus/devices (default /; an emulated tree in tests)
  --json            Print the devices as JSON instead of a table

Every command takes --help. Exit status: 0 success, 1 the operation failed, 2 bad usage.
`

function runList(args: string[], io: Io, listDevices: typeof import('./index.js').listDevices): number {
  const { values, help } = parse(args, { root: { type: 'string' }, json: { type: 'boolean' } }, { min: 0, max: 0, names: '' })
  const { root, json } = values
  if (help) {
    io.out(HELP)
    return 0
  }
  rootOption(root)
  const devices = listDevices(root === undefined ? {} : { root })
  if (json) io.out(`${JSON.stringify(devices, null, 2)}\n`)
  else if (devices.length === 0) io.out(`no vmbus devices under ${root ?? '/'}\n`)
  else io.out(`${formatDeviceTable(devices)}\n`)
  return 0
}

type Run = (args: string[], io: Io) => number | Promise<number>

/**
 * Each command's module is loaded only when that command runs: the modules load the native addon, and `--help`,
 * `--version` and bad usage must work (and say what is wrong) on a machine where the addon is not installed.
 */
const COMMANDS: Record<string, () => Promise<Run>> = {
  list: async () => {
    const { listDevices } = await import('./index.js')
    return (a, io) => runList(a, io, listDevices)
  },
  bind: async () => {
    const { runBind } = await import('./cli/bind.js')
    return (a, io) => runBind(a, io, false)
  },
  unbind: async () => {
    const { runBind } = await import('./cli/bind.js')
    return (a, io) => runBind(a, io, true)
  },
  info: async () => (await import('./cli/device.js')).runInfo,
  emulate: async () => (await import('./cli/emulate.js')).runEmulate,
  ctl: async () => (await import('./cli/ctl.js')).runCtl,
  metrics: async () => (await import('./cli/metrics.js')).runMetrics,
  demo: async () => (await import('./cli/demo.js')).runDemo,
  capture: async () => (await import('./cli/device.js')).runCapture,
  stats: async () => {
    const { runStats } = await import('./cli/device.js')
    return (a, io) => runStats(a, io, false)
  },
  xstats: async () => {
    const { runStats } = await import('./cli/device.js')
    return (a, io) => runStats(a, io, true)
  },
}

/** The version in this package's package.json (two levels up from both src/cli.ts and dist/cli.js). */
export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
  return pkg.version
}

/** The addon file and prebuilt package the loader looks for on this machine, for the "not installed" message. */
function addonNames(): { file: string; pkg: string } {
  const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime)
  const abi = `${process.platform}-${process.arch}${process.platform === 'linux' ? (glibc ? '-gnu' : '-musl') : ''}`
  return { file: `netvsc.${abi}.node`, pkg: `netvsc-${abi}` }
}

/** Loads a command's module; a native addon that cannot be loaded becomes one line saying what to install. */
async function loadCommand(load: () => Promise<Run>): Promise<Run> {
  try {
    return await load()
  } catch (err) {
    const { file, pkg } = addonNames()
    const why = err instanceof Error && err.message.startsWith('Cannot find native binding') ? 'it is not installed' : 'it does not load'
    throw new CommandError(
      `the native addon for ${process.platform}/${process.arch} is missing (${why}: neither the optional package ${pkg} nor ${file}); ` +
        'reinstall netvsc without --omit=optional, or build it from source with Rust >= 1.88: npm rebuild netvsc',
    )
  }
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'it already exists',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'it is a directory',
  ENOSPC: 'no space left on the device',
  EROFS: 'read-only file system',
  EBUSY: 'device or resource busy',
}

/** A Node system error (fs, child_process) in our words: what we tried on which path, and why it failed. */
function systemErrorMessage(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException | null
  if (!(err instanceof Error) || typeof e?.code !== 'string' || typeof e.syscall !== 'string') return null
  const verb: Record<string, string> = { open: 'open', mkdir: 'create the directory', unlink: 'remove', rmdir: 'remove', stat: 'read', lstat: 'read', scandir: 'list', spawn: 'run', write: 'write', read: 'read', rename: 'rename' }
  const what = e.path ?? ''
  return `cannot ${verb[e.syscall.replace(/Sync$/, '')] ?? e.syscall}${what ? ` ${what}` : ''}: ${ERRNO_TEXT[e.code] ?? e.code}`
}

/** Runs the CLI on `argv` (without node and script) and returns the exit status. */
export async function main(argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      io.out(HELP)
      return 0
    }
    if (command === '--version' || command === '-V' || command === 'version') {
      io.out(`${packageVersion()}\n`)
      return 0
    }
    const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined
    if (load === undefined) {
      throw new UsageError(command.startsWith('-') ? `unknown option '${command}' (try 'netvsc --help')` : `unknown command '${command}' (try 'netvsc --help')`)
    }
    const run = await loadCommand(load)
    return await run(rest, io)
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`netvsc: ${err.message.split('\n')[0]}\n`)
      return 2
    }
    if (err instanceof NetvscError) {
      io.err(`netvsc: ${err.code}: ${err.message.split('\n')[0]}\n`)
      return 1
    }
    const sys = systemErrorMessage(err)
    if (sys !== null) {
      io.err(`netvsc: ${sys}\n`)
      return 1
    }
    io.err(`netvsc: ${err instanceof CommandError ? '' : 'error: '}${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\n`)
    return 1
  }
}

if (require.main === module) {
  void main(process.argv.slice(2), {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    tty: process.stdout.isTTY === true,
  }).then((code) => {
    process.exitCode = code
  })
}
