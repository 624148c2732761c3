/**
 * Telemetry of running services: every process that opens a device publishes its counters, per-queue counters,
 * link and VF state in a page (`<root>/run/netvsc/<uuid>.telemetry`, written by the driver's control thread every
 * 100 ms; see crates/netvsc/src/telemetry.rs). Any process reads it here without opening the device, turns it
 * into Prometheus/OpenMetrics text, or asks the owner to capture its bursts (`requestCapture`).
 */
import * as native from '../binding.js'
import { fromNative } from './errors.js'
import type { PortStats } from './netvsc.js'

/** DPDK's per-queue counter names (15 per direction, the order of the page). */
export const QUEUE_STAT_NAMES = [
  'good_packets',
  'good_bytes',
  'errors',
  'ring full',
  'channel full',
  'multicast_packets',
  'broadcast_packets',
  'undersize_packets',
  'size_64_packets',
  'size_65_127_packets',
  'size_128_255_packets',
  'size_256_511_packets',
  'size_512_1023_packets',
  'size_1024_1518_packets',
  'size_1519_max_packets',
] as const

const PORT_KEYS: readonly (keyof PortStats)[] = ['ipackets', 'opackets', 'ibytes', 'obytes', 'imissed', 'ierrors', 'oerrors']
const VF_KEYS = ['rxPackets', 'rxBytes', 'txPackets', 'txBytes', 'rxDropped', 'txErrors'] as const

/** One queue in a snapshot: the 15 tx and 15 rx counters by name, and rx missed. */
export interface QueueTelemetry {
  queue: number
  tx: Record<(typeof QUEUE_STAT_NAMES)[number], number>
  rx: Record<(typeof QUEUE_STAT_NAMES)[number], number>
  rxMissed: number
}

/** What the owner of a device last published. */
export interface Telemetry {
  uuid: string
  pid: number
  /** The owner still runs (a page left by a crash is stale). */
  alive: boolean
  /** When the owner published this (ms since the Unix epoch). */
  updatedMs: number
  openedMs: number
  link: { up: boolean; speedMbps: number }
  mtu: number
  vf: { state: string | null; serial: number; switched: boolean } & Record<(typeof VF_KEYS)[number], number>
  port: PortStats
  queues: QueueTelemetry[]
  /** Device-level xstats (`hv_*` ignored-input, recovery and budget counters, `vf_*` failover counters), as
   * `dev.xstats()` names them. */
  device: Record<string, number>
  capture: { id: number; frames: number; done: number }
}

function call<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw fromNative(err)
  }
}

/** The page of device `uuid` under `root` (default `/`). */
export function telemetryPath(uuid: string, root = '/'): string {
  return native.telemetryPath(root, uuid)
}

function convert(uuid: string, t: native.NativeTelemetry): Telemetry {
  const named = (base: number) =>
    Object.fromEntries(QUEUE_STAT_NAMES.map((n, i) => [n, t.queues[base + i] ?? 0])) as QueueTelemetry['tx']
  return {
    uuid,
    pid: t.pid,
    alive: t.alive,
    updatedMs: t.updatedMs,
    openedMs: t.openedMs,
    link: { up: t.linkUp, speedMbps: t.linkSpeedMbps },
    mtu: t.mtu,
    vf: {
      state: t.vfState ?? null,
      serial: t.vfSerial,
      switched: t.vfSwitched,
      ...(Object.fromEntries(VF_KEYS.map((k, i) => [k, t.vf[i] ?? 0])) as Record<(typeof VF_KEYS)[number], number>),
    },
    port: Object.fromEntries(PORT_KEYS.map((k, i) => [k, t.port[i] ?? 0])) as unknown as PortStats,
    queues: Array.from({ length: t.queueCount }, (_, q) => ({
      queue: q,
      tx: named(q * 31),
      rx: named(q * 31 + 15),
      rxMissed: t.queues[q * 31 + 30] ?? 0,
    })),
    device: Object.fromEntries(t.deviceNames.map((n, i) => [n, t.deviceValues[i] ?? 0])),
    capture: { id: t.captureId, frames: t.captureFrames, done: t.captureDone },
  }
}

/** Reads the page of `uuid` (never opens or disturbs the device). `ERR_NETVSC_NOT_OPEN` if no process publishes it. */
export function readTelemetry(uuid: string, options: { root?: string } = {}): Telemetry {
  const u = uuid.toLowerCase()
  return convert(u, call(() => native.readTelemetry(telemetryPath(u, options.root ?? '/'))))
}

/** The pages of every device under `root` whose owner still runs. */
export function listTelemetry(options: { root?: string } = {}): Telemetry[] {
  const out: Telemetry[] = []
  for (const e of native.listTelemetry(options.root ?? '/')) {
    try {
      const t = convert(e.uuid, native.readTelemetry(e.path))
      if (t.alive) out.push(t)
    } catch {
      // A page being created or removed right now: skip it this time.
    }
  }
  return out
}

/**
 * Asks the owner of `uuid` to mirror its bursts into the pcapng file `file` (null: stop the capture), for at most
 * `count` frames / `ms` milliseconds. Returns the request id; the page's `capture.id` shows it while it runs and
 * `capture.done` once it ended.
 */
export function requestCapture(uuid: string, file: string | null, options: { root?: string; count?: number; ms?: number } = {}): number {
  return call(() => native.requestCapture(telemetryPath(uuid.toLowerCase(), options.root ?? '/'), file, options.count ?? 0, options.ms ?? 0))
}

/** Rates between two snapshots of one device: per second, per queue and for the port. */
export interface Rates {
  seconds: number
  rxPps: number
  txPps: number
  rxBps: number
  txBps: number
  queues: Array<{ queue: number; rxPps: number; txPps: number; rxBps: number; txBps: number }>
}

/** Packets and bits per second from `a` to `b` (the owner's publish times). */
export function rates(a: Telemetry, b: Telemetry): Rates {
  const s = Math.max((b.updatedMs - a.updatedMs) / 1000, 1e-3)
  const per = (x: number, y: number) => Math.max(0, y - x) / s
  return {
    seconds: s,
    rxPps: per(a.port.ipackets, b.port.ipackets),
    txPps: per(a.port.opackets, b.port.opackets),
    rxBps: per(a.port.ibytes, b.port.ibytes) * 8,
    txBps: per(a.port.obytes, b.port.obytes) * 8,
    queues: b.queues.map((q, i) => {
      const p = a.queues[i]
      return {
        queue: q.queue,
        rxPps: per(p?.rx.good_packets ?? 0, q.rx.good_packets),
        txPps: per(p?.tx.good_packets ?? 0, q.tx.good_packets),
        rxBps: per(p?.rx.good_bytes ?? 0, q.rx.good_bytes) * 8,
        txBps: per(p?.tx.good_bytes ?? 0, q.tx.good_bytes) * 8,
      }
    }),
  }
}

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/**
 * Prometheus text exposition (version 0.0.4, which OpenMetrics scrapers also accept) of the snapshots: port
 * counters, per-queue counters (every DPDK xstat, label `queue`, `direction`, `stat`), link, MTU and VF state.
 */
export function metricsText(snaps: readonly Telemetry[]): string {
  const out: string[] = []
  const family = (name: string, type: 'counter' | 'gauge', help: string, rows: Array<[string, number]>) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, v] of rows) out.push(`${name}{${labels}} ${v}`)
  }
  const dev = (t: Telemetry) => `device="${label(t.uuid)}"`
  const port: Array<[keyof PortStats, string, string]> = [
    ['ipackets', 'netvsc_rx_packets_total', 'Packets received (VF path included).'],
    ['ibytes', 'netvsc_rx_bytes_total', 'Bytes received (VF path included).'],
    ['imissed', 'netvsc_rx_missed_total', 'Received packets dropped for lack of room.'],
    ['ierrors', 'netvsc_rx_errors_total', 'Receive errors.'],
    ['opackets', 'netvsc_tx_packets_total', 'Packets sent (VF path included).'],
    ['obytes', 'netvsc_tx_bytes_total', 'Bytes sent (VF path included).'],
    ['oerrors', 'netvsc_tx_errors_total', 'Send errors.'],
  ]
  for (const [key, name, help] of port) family(name, 'counter', help, snaps.map((t) => [dev(t), t.port[key]]))
  family(
    'netvsc_queue_stat_total',
    'counter',
    'Per-queue DPDK xstats of the synthetic path.',
    snaps.flatMap((t) =>
      t.queues.flatMap((q) =>
        (['rx', 'tx'] as const).flatMap((d) =>
          QUEUE_STAT_NAMES.map((n): [string, number] => [`${dev(t)},queue="${q.queue}",direction="${d}",stat="${label(n)}"`, q[d][n]]),
        ),
      ),
    ),
  )
  family('netvsc_link_up', 'gauge', 'Link state (1 up).', snaps.map((t) => [dev(t), t.link.up ? 1 : 0]))
  family('netvsc_link_speed_bits_per_second', 'gauge', 'Link speed.', snaps.map((t) => [dev(t), t.link.speedMbps * 1e6]))
  family('netvsc_mtu_bytes', 'gauge', 'MTU in use.', snaps.map((t) => [dev(t), t.mtu]))
  family('netvsc_vf_switched', 'gauge', 'Data path on the VF (1) or synthetic (0).', snaps.map((t) => [dev(t), t.vf.switched ? 1 : 0]))
  family('netvsc_vf_info', 'gauge', 'VF failover state.', snaps.map((t) => [`${dev(t)},state="${t.vf.state ?? 'none'}",serial="${t.vf.serial}"`, 1]))
  family('netvsc_queues', 'gauge', 'Queue pairs in use.', snaps.map((t) => [dev(t), t.queues.length]))
  family(
    'netvsc_device_xstats_total',
    'counter',
    'Device-level extended statistics (hv_* ignored input, recoveries and budgets; vf_* failover), by xstat name.',
    snaps.flatMap((t) => Object.entries(t.device).map(([n, v]): [string, number] => [`${dev(t)},name="${n}"`, v])),
  )
  family('netvsc_telemetry_updated_seconds', 'gauge', 'When the owner last published.', snaps.map((t) => [`${dev(t)},pid="${t.pid}"`, t.updatedMs / 1000]))
  return `${out.join('\n')}\n`
}
