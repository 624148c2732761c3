/**
 * DPDK netvsc device arguments (`latency=50,rx_copybreak=256,tx_copybreak=512,rx_extmbuf_enable=0,numa_aware=0`),
 * parsed with the same rules as the Rust driver (crates/netvsc/src/devargs.rs): comma-separated `key=value`
 * items, blank items skipped, keys and values trimmed, values as C `strtoul(s, &end, 0)` (0x hex, leading-0 octal,
 * decimal; nothing else), bounded, and an error naming the key and the value for anything else.
 */
import { NetvscError } from './errors.js'

export interface Devargs {
  /** Host scan latency in µs (default 50; below 6553). */
  latency: number
  /** Zero-copy rx above this frame size when rxExtmbufEnable (default 256; ≤ 65536). */
  rxCopybreak: number
  /** Tx frames up to this size are copied into send sections (default 512; 0 = never; ≤ 65536). */
  txCopybreak: number
  /** Zero-copy receive (default false). */
  rxExtmbufEnable: boolean
  /** Accepted for DPDK compatibility (default false). */
  numaAware: boolean
}

/** Devargs as an object with DPDK's key names; values as numbers, strings in DPDK syntax, or booleans for flags. */
export type DevargsObject = Partial<Record<DevargKey, number | string | boolean>>

export const DEVARG_KEYS = ['latency', 'rx_copybreak', 'tx_copybreak', 'rx_extmbuf_enable', 'numa_aware'] as const
export type DevargKey = (typeof DEVARG_KEYS)[number]

export const DEVARGS_DEFAULTS: Readonly<Devargs> = Object.freeze({
  latency: 50,
  rxCopybreak: 256,
  txCopybreak: 512,
  rxExtmbufEnable: false,
  numaAware: false,
})

const LATENCY_LIMIT_US = 6553
const COPYBREAK_MAX = 65536

function fail(key: string, value: string, reason: string): never {
  throw new NetvscError('ERR_NETVSC_DEVARGS', `devargs: key \`${key}\` value \`${value}\`: ${reason}`)
}

/** C `strtoul(s, &end, 0)` with `*end == 0` required; `null` on any stray character or overflow past 2^64. */
export function strtoul(s: string): number | null {
  let digits = s
  let radix = 10
  if (/^0[xX]/.test(s)) {
    digits = s.slice(2)
    radix = 16
  } else if (s.length > 1 && s.startsWith('0')) {
    digits = s.slice(1)
    radix = 8
  }
  const ok = radix === 16 ? /^[0-9a-fA-F]+$/ : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/
  if (!ok.test(digits)) return null
  const big = BigInt(radix === 16 ? `0x${digits}` : radix === 8 ? `0o${digits}` : digits)
  if (big >= 1n << 64n) return null
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big)
}

function apply(out: Devargs, key: string, value: string): void {
  if (!(DEVARG_KEYS as readonly string[]).includes(key)) fail(key, value, 'unknown key')
  if (value === '') fail(key, value, 'empty value')
  const n = strtoul(value)
  if (n === null) fail(key, value, 'not a number')
  switch (key as DevargKey) {
    case 'latency':
      if (n >= LATENCY_LIMIT_US) fail(key, value, 'latency must be below 6553 us')
      out.latency = n
      return
    case 'rx_copybreak':
    case 'tx_copybreak':
      if (n > COPYBREAK_MAX) fail(key, value, 'copybreak must be at most 65536')
      if (key === 'rx_copybreak') out.rxCopybreak = n
      else out.txCopybreak = n
      return
    case 'rx_extmbuf_enable':
    case 'numa_aware':
      if (n > 1) fail(key, value, 'flag must be 0 or 1')
      if (key === 'rx_extmbuf_enable') out.rxExtmbufEnable = n === 1
      else out.numaAware = n === 1
      return
  }
}

/** Parses devargs given as a DPDK string or as an object with DPDK key names. */
export function parseDevargs(input: string | DevargsObject = ''): Devargs {
  const out: Devargs = { ...DEVARGS_DEFAULTS }
  if (typeof input === 'string') {
    for (const item of input.split(',')) {
      if (item.trim() === '') continue
      const eq = item.indexOf('=')
      const key = (eq < 0 ? item : item.slice(0, eq)).trim()
      const value = eq < 0 ? '' : item.slice(eq + 1).trim()
      apply(out, key, value)
    }
    return out
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new NetvscError('ERR_NETVSC_DEVARGS', `devargs must be a string or an object, got ${input === null ? 'null' : typeof input}`)
  }
  for (const [key, raw] of Object.entries(input)) {
    if (raw === undefined) continue
    let value: string
    if (typeof raw === 'boolean') value = raw ? '1' : '0'
    else if (typeof raw === 'number') value = Number.isInteger(raw) && raw >= 0 ? String(raw) : fail(key, String(raw), 'not a number')
    else if (typeof raw === 'string') value = raw.trim()
    else fail(key, String(raw), 'not a number')
    apply(out, key, value)
  }
  return out
}

/** The DPDK string for `d` (every key, so the driver sees exactly these values). */
export function formatDevargs(d: Devargs): string {
  return [
    `latency=${d.latency}`,
    `rx_copybreak=${d.rxCopybreak}`,
    `tx_copybreak=${d.txCopybreak}`,
    `rx_extmbuf_enable=${d.rxExtmbufEnable ? 1 : 0}`,
    `numa_aware=${d.numaAware ? 1 : 0}`,
  ].join(',')
}
