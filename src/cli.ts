#!/usr/bin/env node
/**
 * The `netvsc` command. `netvsc list [--root DIR] [--json]` lists the vmbus devices (netvsc NICs and others) with
 * their uio maps and channels. Exit status: 0 success, 1 the operation failed, 2 bad usage (one line on stderr).
 */
import { parseArgs } from 'node:util'
import { CommandError, runBind } from './cli/bind.js'
import { UsageError, type Io } from './cli/common.js'
import { runDemo } from './cli/demo.js'
import { runCapture, runInfo, runStats } from './cli/device.js'
import { runCtl } from './cli/ctl.js'
import { runEmulate } from './cli/emulate.js'
import { NetvscError, listDevices } from './index.js'
import { formatDeviceTable } from './format.js'

export const HELP = `Usage: netvsc <command> [options]

User-space poll-mode driver for the Hyper-V synthetic NIC (netvsc over uio_hv_generic).

Commands:
  list                      List vmbus devices: NICs and others, uio node, maps, channels
  bind <uuid|iface>         Give a NIC to uio_hv_generic (driverctl or sysfs; --dry-run, --force)
  unbind <uuid>             Give it back to hv_netvsc
  info <uuid|iface>         sysfs facts and what bring-up negotiates
  emulate --dir D           Run the Hyper-V host emulator (--run -- CMD runs a guest against it)
  ctl DIR COMMAND           Runtime command to a running emulator (vf offer|revoke|remove|add|..., link, stats)
  demo                      Emulator + driver in this process: link event, traffic both ways, Mpps
  capture <uuid> --pcap F   Record the frames this process's driver sends and receives into a pcap file
  stats <uuid>              Port and per-queue counters (--watch)
  xstats <uuid>             DPDK-named extended statistics

Options of list:
  --root DIR        Directory holding sys/bus/vmbus/devices (default /; an emulated tree in tests)
  --json            Print the devices as JSON instead of a table

Every command takes --help. Exit status: 0 success, 1 the operation failed, 2 bad usage.
`

function runList(args: string[], io: Io): number {
  let parsed
  try {
    parsed = parseArgs({
      args,
      options: { root: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    })
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
  const { root, json, help } = parsed.values
  if (help) {
    io.out(HELP)
    return 0
  }
  if (root === '') throw new UsageError("option '--root' needs a non-empty directory")
  const devices = listDevices(root === undefined ? {} : { root })
  if (json) io.out(`${JSON.stringify(devices, null, 2)}\n`)
  else if (devices.length === 0) io.out(`no vmbus devices under ${root ?? '/'}\n`)
  else io.out(`${formatDeviceTable(devices)}\n`)
  return 0
}

const COMMANDS: Record<string, (args: string[], io: Io) => number | Promise<number>> = {
  list: runList,
  bind: (a, io) => runBind(a, io, false),
  unbind: (a, io) => runBind(a, io, true),
  info: runInfo,
  emulate: runEmulate,
  ctl: runCtl,
  demo: runDemo,
  capture: runCapture,
  stats: (a, io) => runStats(a, io, false),
  xstats: (a, io) => runStats(a, io, true),
}

/** Runs the CLI on `argv` (without node and script) and returns the exit status. */
export async function main(argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      io.out(HELP)
      return 0
    }
    const run = COMMANDS[command]
    if (run === undefined) throw new UsageError(`unknown command '${command}' (try 'netvsc --help')`)
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
