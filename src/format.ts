/** Text rendering for the CLI and the demo: the one table formatter, and the device list built on it. */
import type { VmbusDevice } from './types.js'

/** Fixed-width text table: columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}

const size = (n: number | null): string => {
  if (n === null) return '-'
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)}M`
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}K`
  return String(n)
}

/** One row per device: uuid, kind, relid, driver, uio node or interface, subchannels, ring/recv/send sizes. */
export function formatDeviceTable(devices: readonly VmbusDevice[]): string {
  const header = ['UUID', 'KIND', 'RELID', 'DRIVER', 'NODE', 'SUBCH', 'RINGS', 'RECV', 'SEND', 'GPADL(R/S)']
  const rows = devices.map((d) => [
    d.uuid,
    d.isNetvsc ? 'netvsc' : 'other',
    String(d.relid),
    d.driver ?? '-',
    d.uioNumber !== null ? `uio${d.uioNumber}` : (d.iface ?? '-'),
    String(d.subchannelCount),
    size(d.mapSizes?.rings ?? null),
    size(d.mapSizes?.recv ?? null),
    size(d.mapSizes?.send ?? null),
    d.recvGpadl !== null || d.sendGpadl !== null ? `${hexOrDash(d.recvGpadl)}/${hexOrDash(d.sendGpadl)}` : '-',
  ])
  return table(header, rows)
}

function hexOrDash(n: number | null): string {
  return n === null ? '-' : `0x${n.toString(16)}`
}
