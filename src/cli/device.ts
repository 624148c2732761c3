/**
 * Device commands: `info`, `capture`, `stats`, `xstats`. When a running process owns the device (its telemetry page
 * `<root>/run/netvsc/<uuid>.telemetry` has a live owner), `stats`/`xstats` read that page and `capture` asks the
 * owner, through it, to mirror its bursts into a pcapng file: nothing opens the device or disturbs the service.
 * Otherwise they open the device in this process: the counters are then this process's (the driver keeps them per
 * opener), so `stats`/`xstats` receive for `--interval` ms and report what they saw; `--watch` repeats until Ctrl-C.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { listDevices, open } from '../index.js'
import type { Netvsc } from '../netvsc.js'
import { type Telemetry, rates, readTelemetry, requestCapture, telemetryPath, QUEUE_STAT_NAMES } from '../telemetry.js'
import { type Io, UsageError, devargsOption, intOption, nonEmpty, parse, rootOption, sleep, table } from './common.js'
import { CommandError } from './bind.js'

export const DEVICE_HELP = `Usage: netvsc info <uuid|iface> [--root DIR] [--devargs S] [--json]
       netvsc capture <uuid|iface> --pcap FILE [--count N] [--timeout-ms T] [--root DIR]
       netvsc stats <uuid|iface> [--interval MS] [--watch] [--json] [--root DIR]
       netvsc xstats <uuid|iface> [--interval MS] [--watch] [--json] [--root DIR]

info     sysfs facts, then (when bound to uio_hv_generic) open it and show what bring-up negotiated
capture  a running service (the device's owner): it mirrors its bursts, both directions, into a pcapng file
         (direction flags, ns timestamps) until --count frames, --timeout-ms, or Ctrl-C. No owner: this process
         opens the device and records what it receives (pcap)
stats    a running service: its published counters (port, every queue; --watch: rates, pps and bit/s per
         queue, every --interval ms). No owner: port totals and per-queue counters after receiving for
         --interval ms (default 1000)
xstats   DPDK-named extended statistics, same sources

Options:
  --root DIR     Directory holding sys/bus/vmbus and dev/uioN (default /; the emulator's directory)
  --devargs S    DPDK devargs for the open (latency=50,rx_copybreak=256,...)
  --json         Machine-readable output
`

const common = { root: { type: 'string' }, json: { type: 'boolean' }, devargs: { type: 'string' } } as const

function openDev(name: string, root: string, devargs: string | undefined, vf = true, queues?: number): Promise<Netvsc> {
  return open(name, { root, timeoutMs: 10_000, ...(devargs !== undefined && { devargs }), ...(!vf && { vf: { enabled: false } }), ...(queues !== undefined && { queues }) })
}

function vfLine(serial: number | null, f: ReturnType<Netvsc['vfInfo']>): string {
  if (f) {
    const where = f.iface ? ` ${f.iface} (${f.mode ?? '-'}${f.zeroCopy ? ' zero-copy' : ''}, ${f.queues} queues)` : ''
    return `serial ${f.serial} ${f.state}${where}${f.switched ? ', data path on the VF' : ''}`
  }
  return serial === null ? 'none offered during bring-up' : `serial ${serial} offered by the host (info does not pair it)`
}

export async function runInfo(args: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parse(args, common, { min: 1, max: 1, names: 'the device uuid or interface' })
  if (help) return (io.out(DEVICE_HELP), 0)
  const root = rootOption(values.root) ?? '/'
  devargsOption(values.devargs)
  const key = positionals[0] ?? ''
  const entry = listDevices({ root }).find((d) => d.uuid === key.toLowerCase() || d.iface === key)
  if (!entry) throw new CommandError(`no vmbus device '${key}' under ${root}`)
  let negotiated = null
  if (entry.uioNumber !== null && entry.isNetvsc) {
    // The VF manager stays off: `info` must not move the data path of a NIC another process may use.
    const dev = await openDev(entry.uuid, root, values.devargs, false)
    try {
      negotiated = { ...dev.info(), link: await dev.link(), vf: { offeredSerial: dev.vf(), failover: dev.vfInfo() } }
    } finally {
      dev.close()
    }
  }
  if (values.json) {
    io.out(`${JSON.stringify({ device: entry, negotiated }, null, 2)}\n`)
    return 0
  }
  const lines = [
    `device     ${entry.uuid} (${entry.isNetvsc ? 'netvsc' : 'other'}, relid ${entry.relid})`,
    `driver     ${entry.driver ?? '-'}${entry.iface ? ` (${entry.iface})` : ''}${entry.uioNumber !== null ? ` /dev/uio${entry.uioNumber}` : ''}`,
    `channels   ${entry.channels.length} (${entry.subchannelCount} subchannels)`,
  ]
  if (negotiated) {
    const n = negotiated
    lines.push(
      `mac        ${n.mac}`,
      `mtu        ${n.mtu}`,
      `nvsp       0x${n.nvspVersion.toString(16)}  ndis ${n.ndisVersion}`,
      `queues     ${n.queues} (host offers ${n.hostQueues})`,
      `recv buf   ${n.recvSections} x ${n.recvSectionSize} B    send buf ${n.sendSections} x ${n.sendSectionSize} B`,
      `link       ${n.link.up ? 'up' : 'down'} ${n.link.speedMbps} Mbit/s`,
      `offloads   tx csum v4 0x${n.offloadCaps.ip4TxCsum.toString(16)} v6 0x${n.offloadCaps.ip6TxCsum.toString(16)}, lso ${n.offloadCaps.lso4Max ?? '-'}/${n.offloadCaps.lso6Max ?? '-'}`,
      `devargs    latency=${n.devargs.latency} rx_copybreak=${n.devargs.rxCopybreak} tx_copybreak=${n.devargs.txCopybreak} rx_extmbuf_enable=${n.devargs.rxExtmbufEnable ? 1 : 0}`,
      `vf         ${vfLine(n.vf.offeredSerial, n.vf.failover)}`,
    )
  } else {
    lines.push('(not bound to uio_hv_generic: bind it with `netvsc bind` to open it)')
  }
  io.out(`${lines.join('\n')}\n`)
  return 0
}

/** The live owner's page of device `key` (uuid or interface) under `root`, or null when no process publishes it. */
function ownerPage(key: string, root: string): Telemetry | null {
  let uuid = key.toLowerCase()
  if (!fs.existsSync(telemetryPath(uuid, root))) {
    const entry = listDevices({ root }).find((d) => d.iface === key)
    if (!entry) return null
    uuid = entry.uuid
  }
  try {
    const t = readTelemetry(uuid, { root })
    return t.alive ? t : null
  } catch {
    return null
  }
}

async function captureOwner(t: Telemetry, root: string, file: string, count: number | undefined, timeout: number | undefined, io: Io, json: boolean): Promise<number> {
  const abs = path.resolve(file)
  const id = requestCapture(t.uuid, abs, { root, ...(count !== undefined && { count }), ...(timeout !== undefined && { ms: timeout }) })
  let stop = false
  const onSig = () => (stop = true)
  process.on('SIGINT', onSig)
  process.on('SIGTERM', onSig)
  let last = t
  try {
    // The owner looks at the request every 100 ms; it then runs the capture and marks it done when it ends.
    const started = Date.now()
    for (;;) {
      await sleep(50)
      last = readTelemetry(t.uuid, { root })
      if (last.capture.done === id) break
      if (!last.alive) throw new CommandError(`the owner of ${t.uuid} (pid ${t.pid}) exited during the capture`)
      if (last.capture.id !== id && Date.now() - started > 5000) {
        throw new CommandError(`the owner of ${t.uuid} (pid ${t.pid}) did not take the capture request within 5 s`)
      }
      if (stop) {
        requestCapture(t.uuid, null, { root })
        stop = false
      }
    }
  } finally {
    process.off('SIGINT', onSig)
    process.off('SIGTERM', onSig)
  }
  if (!fs.existsSync(abs)) throw new CommandError(`the owner of ${t.uuid} could not write ${abs}`)
  const frames = last.capture.frames
  io.out(json ? `${JSON.stringify({ file: abs, frames, owner: t.pid })}\n` : `captured ${frames} frames of pid ${t.pid} to ${abs} (pcapng)\n`)
  return 0
}

export async function runCapture(args: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parse(
    args,
    { ...common, pcap: { type: 'string' }, count: { type: 'string' }, 'timeout-ms': { type: 'string' } },
    { min: 1, max: 1, names: 'the device uuid or interface' },
  )
  if (help) return (io.out(DEVICE_HELP), 0)
  const file = nonEmpty('pcap', values.pcap)
  if (file === undefined) throw new UsageError("capture needs '--pcap FILE'")
  const count = intOption('count', values.count, 1, 1e12)
  const timeout = intOption('timeout-ms', values['timeout-ms'], 1, 1e9)
  devargsOption(values.devargs)
  const owner = ownerPage(positionals[0] ?? '', rootOption(values.root) ?? '/')
  if (owner) return captureOwner(owner, rootOption(values.root) ?? '/', file, count, timeout, io, values.json === true)
  const dev = await openDev(positionals[0] ?? '', rootOption(values.root) ?? '/', values.devargs)
  let cap
  try {
    cap = dev.startCapture(file, count === undefined ? {} : { count })
  } catch (err) {
    dev.close()
    throw err
  }
  let stop = false
  const onSig = () => (stop = true)
  process.on('SIGINT', onSig)
  process.on('SIGTERM', onSig)
  const deadline = timeout === undefined ? Infinity : Date.now() + timeout
  try {
    const queues = dev.queues()
    const buf = new Uint8Array(64 * 9216)
    const lens = new Uint32Array(64)
    const meta = new Uint32Array(64 * 4)
    while (!stop && Date.now() < deadline && cap.active) {
      let got = 0
      for (const q of queues) got += q.rxBurst(buf, lens, meta)
      if (got === 0) await sleep(1)
    }
  } finally {
    process.off('SIGINT', onSig)
    process.off('SIGTERM', onSig)
    dev.close()
  }
  if (cap.error) throw new CommandError(cap.error.message)
  io.out(values.json ? `${JSON.stringify({ file, frames: cap.frames })}\n` : `captured ${cap.frames} frames to ${file}\n`)
  return 0
}

async function measure(dev: Netvsc, ms: number): Promise<void> {
  const queues = dev.queues()
  const buf = new Uint8Array(64 * 9216)
  const lens = new Uint32Array(64)
  const meta = new Uint32Array(256)
  const until = Date.now() + ms
  while (Date.now() < until) {
    let got = 0
    for (const q of queues) got += q.rxBurst(buf, lens, meta)
    if (got === 0) await sleep(1)
  }
}

export async function runStats(args: string[], io: Io, extended: boolean): Promise<number> {
  const { values, positionals, help } = parse(
    args,
    { ...common, interval: { type: 'string' }, watch: { type: 'boolean' } },
    { min: 1, max: 1, names: 'the device uuid or interface' },
  )
  if (help) return (io.out(DEVICE_HELP), 0)
  const interval = intOption('interval', values.interval, 0, 3_600_000) ?? 1000
  const watch = values.watch === true
  devargsOption(values.devargs)
  const owner = ownerPage(positionals[0] ?? '', rootOption(values.root) ?? '/')
  if (owner) return statsOwner(owner, rootOption(values.root) ?? '/', extended, watch, interval, io, values.json === true)
  // Every queue pair the host offers (it grants at most what it has), so the per-queue table covers them all.
  const dev = await openDev(positionals[0] ?? '', rootOption(values.root) ?? '/', values.devargs, true, 64)
  let stop = false
  const onSig = () => (stop = true)
  process.on('SIGINT', onSig)
  process.on('SIGTERM', onSig)
  try {
    do {
      await measure(dev, interval)
      if (extended) {
        const x = dev.xstats()
        io.out(values.json ? `${JSON.stringify(x)}\n` : `${table(['NAME', 'VALUE'], Object.entries(x).map(([k, v]) => [k, String(v)]))}\n`)
      } else if (values.json) {
        io.out(`${JSON.stringify({ ...dev.stats(), queues: dev.queueStats() })}\n`)
      } else {
        const s = dev.stats()
        io.out(`ipackets ${s.ipackets}  ibytes ${s.ibytes}  imissed ${s.imissed}  ierrors ${s.ierrors}  opackets ${s.opackets}  obytes ${s.obytes}  oerrors ${s.oerrors}\n`)
        io.out(`${table(['QUEUE', 'RX PKTS', 'RX BYTES', 'TX PKTS', 'TX BYTES', 'MISSED'], dev.queueStats().map((q) => [String(q.queue), String(q.rxPackets), String(q.rxBytes), String(q.txPackets), String(q.txBytes), String(q.rxMissed)]))}\n`)
      }
    } while (watch && !stop)
  } finally {
    process.off('SIGINT', onSig)
    process.off('SIGTERM', onSig)
    dev.close()
  }
  return 0
}

const mbit = (bps: number) => (bps / 1e6).toFixed(3)

function printOwner(t: Telemetry, prev: Telemetry | null, extended: boolean, io: Io, json: boolean): void {
  const r = prev ? rates(prev, t) : null
  if (json) {
    io.out(`${JSON.stringify({ source: 'telemetry', ...t, ...(r && { rates: r }) })}\n`)
    return
  }
  if (extended) {
    const rows: string[][] = []
    for (const q of t.queues) {
      for (const d of ['tx', 'rx'] as const) for (const n of QUEUE_STAT_NAMES) rows.push([`${d}_q${q.queue}_${n}`, String(q[d][n])])
      rows.push([`rx_q${q.queue}_missed`, String(q.rxMissed)])
    }
    for (const [k, v] of Object.entries(t.vf)) rows.push([`vf_${k}`, String(v)])
    for (const [k, v] of Object.entries(t.device)) rows.push([k, String(v)])
    io.out(`${table(['NAME', 'VALUE'], rows)}\n`)
    return
  }
  const s = t.port
  io.out(`pid ${t.pid}  link ${t.link.up ? 'up' : 'down'} ${t.link.speedMbps} Mbit/s  mtu ${t.mtu}  vf ${t.vf.state ?? 'none'}${t.vf.switched ? ' (data path)' : ''}\n`)
  io.out(`ipackets ${s.ipackets}  ibytes ${s.ibytes}  imissed ${s.imissed}  ierrors ${s.ierrors}  opackets ${s.opackets}  obytes ${s.obytes}  oerrors ${s.oerrors}\n`)
  if (r) io.out(`rx ${r.rxPps.toFixed(0)} pps ${mbit(r.rxBps)} Mbit/s  tx ${r.txPps.toFixed(0)} pps ${mbit(r.txBps)} Mbit/s\n`)
  const head = ['QUEUE', 'RX PKTS', 'RX BYTES', 'TX PKTS', 'TX BYTES', 'MISSED', ...(r ? ['RX PPS', 'RX MBIT/S', 'TX PPS', 'TX MBIT/S'] : [])]
  const rows = t.queues.map((q) => {
    const qr = r?.queues[q.queue]
    return [
      String(q.queue),
      String(q.rx.good_packets),
      String(q.rx.good_bytes),
      String(q.tx.good_packets),
      String(q.tx.good_bytes),
      String(q.rxMissed),
      ...(qr ? [qr.rxPps.toFixed(0), mbit(qr.rxBps), qr.txPps.toFixed(0), mbit(qr.txBps)] : []),
    ]
  })
  io.out(`${table(head, rows)}\n`)
}

async function statsOwner(first: Telemetry, root: string, extended: boolean, watch: boolean, interval: number, io: Io, json: boolean): Promise<number> {
  if (!watch) {
    printOwner(first, null, extended, io, json)
    return 0
  }
  let stop = false
  const onSig = () => (stop = true)
  process.on('SIGINT', onSig)
  process.on('SIGTERM', onSig)
  let prev = first
  try {
    printOwner(first, null, extended, io, json)
    while (!stop) {
      await sleep(Math.max(interval, 100))
      if (stop) break
      const t = readTelemetry(first.uuid, { root })
      printOwner(t, prev, extended, io, json)
      if (!t.alive) break
      prev = t
    }
  } finally {
    process.off('SIGINT', onSig)
    process.off('SIGTERM', onSig)
  }
  return 0
}
