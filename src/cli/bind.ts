/**
 * `netvsc bind` / `netvsc unbind`: hand a NIC from the kernel's hv_netvsc to uio_hv_generic and back, the way the
 * DPDK guide does — `driverctl -b vmbus set-override` when driverctl exists (and the root is `/`), otherwise sysfs:
 * register the netvsc class with uio_hv_generic (`new_id`), `unbind` from the current driver, `bind` to the new one.
 * A NIC carrying the only default route, or up with addresses, is refused unless `--force`.
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { listDevices } from '../index.js'
import type { VmbusDevice } from '../types.js'
import { CommandError, type Io, UsageError, nonEmpty, parse, rootOption } from './common.js'

export const NETVSC_CLASS = 'f8615163-df3e-46c5-913f-f2d2f965ed0e'

export const BIND_HELP = `Usage: netvsc bind <uuid|iface> [--root DIR] [--dry-run] [--force]
       netvsc unbind <uuid> [--root DIR] [--dry-run]

bind: give the NIC to uio_hv_generic (for this driver or DPDK); unbind: give it back to hv_netvsc.
Uses 'driverctl -b vmbus set-override' when driverctl is installed, else sysfs new_id/unbind/bind.

Options:
  --root DIR   Directory holding sys/bus/vmbus (default /; a fake tree in tests)
  --dry-run    Print the steps without doing them
  --force      Bind even a NIC that carries the only default route or is up with addresses
`

interface Step {
  /** Shell form, for --dry-run and errors. */
  text: string
  run: () => void
}

function writeStep(file: string, value: string): Step {
  return {
    text: `echo ${value} > ${file}`,
    run: () => fs.writeFileSync(file, `${value}\n`),
  }
}

function execStep(argv: string[]): Step {
  return {
    text: argv.join(' '),
    run: () => {
      const r = spawnSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`)
    },
  }
}

function hasDriverctl(root: string): boolean {
  if (path.resolve(root) !== '/') return false
  return spawnSync('driverctl', ['--version'], { stdio: 'ignore' }).status === 0
}

function findDevice(root: string, key: string): VmbusDevice {
  const devices = listDevices({ root })
  const d = devices.find((x) => x.uuid === key.toLowerCase() || x.iface === key)
  if (!d) throw new CommandError(`no vmbus device '${key}' under ${root}`)
  if (!d.isNetvsc) throw new CommandError(`device ${d.uuid} is not a netvsc NIC (class ${d.classId})`)
  return d
}

/** A failure that exits 1 with one line. */
export { CommandError } from './common.js'

/** Interfaces that carry a default route, from `<root>/proc/net/route`. */
function defaultRouteIfaces(root: string): string[] {
  let text: string
  try {
    text = fs.readFileSync(path.join(root, 'proc/net/route'), 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 2 && f[1] === '00000000')
    .map((f) => f[0] ?? '')
}

/** Why binding `iface` would cut the machine off, or null. */
function dangerous(root: string, iface: string): string | null {
  const routes = defaultRouteIfaces(root)
  if (routes.includes(iface) && routes.every((r) => r === iface)) return `${iface} carries the only default route`
  let oper = ''
  try {
    oper = fs.readFileSync(path.join(root, 'sys/class/net', iface, 'operstate'), 'utf8').trim()
  } catch {
    // no operstate: not up as far as we can tell
  }
  const addrs: string[] = []
  if (path.resolve(root) === '/') {
    for (const a of os.networkInterfaces()[iface] ?? []) addrs.push(a.address)
  }
  try {
    for (const l of fs.readFileSync(path.join(root, 'proc/net/if_inet6'), 'utf8').split('\n')) {
      const f = l.trim().split(/\s+/)
      if (f[5] === iface && f[0]) addrs.push(f[0])
    }
  } catch {
    // no IPv6 table
  }
  if (oper === 'up' && addrs.length > 0) return `${iface} is up with addresses (${[...new Set(addrs)].join(', ')})`
  return null
}

export function bindSteps(root: string, d: VmbusDevice, useDriverctl: boolean): Step[] {
  if (useDriverctl) return [execStep(['driverctl', '-b', 'vmbus', 'set-override', d.uuid, 'uio_hv_generic'])]
  const drivers = path.join(root, 'sys/bus/vmbus/drivers')
  const steps: Step[] = []
  if (!fs.existsSync(path.join(drivers, 'uio_hv_generic')) && path.resolve(root) === '/') {
    steps.push(execStep(['modprobe', 'uio_hv_generic']))
  }
  steps.push(writeStep(path.join(drivers, 'uio_hv_generic/new_id'), NETVSC_CLASS))
  if (d.driver) steps.push(writeStep(path.join(drivers, d.driver, 'unbind'), d.uuid))
  steps.push(writeStep(path.join(drivers, 'uio_hv_generic/bind'), d.uuid))
  return steps
}

export function unbindSteps(root: string, d: VmbusDevice, useDriverctl: boolean): Step[] {
  if (useDriverctl) return [execStep(['driverctl', '-b', 'vmbus', 'unset-override', d.uuid])]
  const drivers = path.join(root, 'sys/bus/vmbus/drivers')
  const steps: Step[] = []
  if (d.driver) steps.push(writeStep(path.join(drivers, d.driver, 'unbind'), d.uuid))
  steps.push(writeStep(path.join(drivers, 'hv_netvsc/bind'), d.uuid))
  return steps
}

export function runBind(args: string[], io: Io, unbind: boolean): number {
  const { values, positionals, help } = parse(
    args,
    { root: { type: 'string' }, 'dry-run': { type: 'boolean' }, force: { type: 'boolean' } },
    { min: 1, max: 1, names: unbind ? 'the device uuid' : 'the device uuid or interface' },
  )
  if (help) {
    io.out(BIND_HELP)
    return 0
  }
  const root = rootOption(values.root) ?? '/'
  const key = positionals[0] ?? ''
  if (unbind && !/^[0-9a-f-]{36}$/i.test(key)) throw new UsageError(`unbind needs a device uuid, got '${key}'`)
  const d = findDevice(root, key)
  const driverctl = hasDriverctl(root)
  if (!unbind) {
    if (d.driver === 'uio_hv_generic') {
      io.out(`${d.uuid} is already bound to uio_hv_generic\n`)
      return 0
    }
    if (d.iface && !values.force) {
      const why = dangerous(root, d.iface)
      if (why) throw new CommandError(`refusing to bind ${d.uuid}: ${why} (use --force)`)
    }
  } else if (d.driver !== 'uio_hv_generic') {
    io.out(`${d.uuid} is not bound to uio_hv_generic (driver ${d.driver ?? 'none'})\n`)
    return 0
  }
  const steps = unbind ? unbindSteps(root, d, driverctl) : bindSteps(root, d, driverctl)
  for (const s of steps) {
    if (values['dry-run']) {
      io.out(`${s.text}\n`)
      continue
    }
    try {
      s.run()
    } catch (err) {
      throw new CommandError(`step '${s.text}' failed: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  if (!values['dry-run']) io.out(`${d.uuid} ${unbind ? 'returned to hv_netvsc' : 'bound to uio_hv_generic'}\n`)
  return 0
}
