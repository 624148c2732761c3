#!/usr/bin/env node
/**
 * The `netvsc` command. `netvsc list [--root DIR] [--json]` lists the vmbus devices (netvsc NICs and others) with
 * their uio maps and channels. Exit status: 0 success, 1 the operation failed, 2 bad usage (one line on stderr).
 */
import { parseArgs } from 'node:util'
import { NetvscError, listDevices } from './index.js'
import { formatDeviceTable } from './format.js'

export const HELP = `Usage: netvsc <command> [options]

User-space poll-mode driver for the Hyper-V synthetic NIC (netvsc over uio_hv_generic).

Commands:
  list              List vmbus devices: NICs and others, uio node, maps, channels.

Options of list:
  --root DIR        Directory holding sys/bus/vmbus/devices (default /; an emulated tree in tests)
  --json            Print the devices as JSON instead of a table

General:
  -h, --help        Show this help
`

class UsageError extends Error {}

interface Io {
  out: (text: string) => void
  err: (text: string) => void
}

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

/** Runs the CLI on `argv` (without node and script) and returns the exit status. */
export function main(argv: string[], io: Io): number {
  const [command, ...rest] = argv
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      io.out(HELP)
      return 0
    }
    if (command === 'list') return runList(rest, io)
    throw new UsageError(`unknown command '${command}' (try 'netvsc --help')`)
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`netvsc: ${err.message.split('\n')[0]}\n`)
      return 2
    }
    if (err instanceof NetvscError) {
      io.err(`netvsc: ${err.code}: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2), {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
  })
}
