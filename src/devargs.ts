/**
 * DPDK netvsc device arguments (`latency=50,rx_copybreak=256,tx_copybreak=512,rx_extmbuf_enable=0,numa_aware=0`),
 * parsed with the same rules as the Rust driver (crates/netvsc/src/devargs.rs): comma-separated `key=value`
 * items, blank items skipped, keys and values trimmed of C whitespace only (space, \t, \n, \v, \f, \r — never a
 * Unicode space such as U+00A0, U+0085 or U+FEFF), values as C `strtoul(s, &end, 0)` (0x hex, leading-0 octal,
 * decimal; nothing else), bounded, and an error naming the key and the value for anything else (each clipped to
 * 32 characters with `…`, so a message quotes at most 64 characters of the input). Both parsers run the shared
 * table crates/netvsc/tests/devargs_cases.json.
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

/** Why a devargs item was refused (the Rust `DevargKind` names). */
export type DevargErrorKind = 'unknown_key' | 'empty_value' | 'not_a_number' | 'latency_range' | 'copybreak_range' | 'not_a_flag'

const REASONS: Readonly<Record<DevargErrorKind, string>> = {
  unknown_key: 'unknown key',
  empty_value: 'empty value',
  not_a_number: 'not a number',
  latency_range: 'latency must be below 6553 us',
  copybreak_range: 'copybreak must be at most 65536',
  not_a_flag: 'flag must be 0 or 1',
}

/** Most characters of the input an error message quotes (key and value together). */
export const DEVARGS_QUOTE_MAX = 64

/** A refused devargs item: `code` ERR_NETVSC_DEVARGS, with the kind and the (clipped) key and value. */
export class DevargsError extends NetvscError {
  readonly kind: DevargErrorKind
  readonly key: string
  readonly value: string

  constructor(kind: DevargErrorKind, key: string, value: string) {
    const k = clip(key, DEVARGS_QUOTE_MAX / 2)
    const v = clip(value, DEVARGS_QUOTE_MAX / 2)
    super('ERR_NETVSC_DEVARGS', `devargs: key \`${k}\` value \`${v}\`: ${REASONS[kind]}`)
    this.kind = kind
    this.key = k
    this.value = v
  }
}

/** `s` clipped to `max` characters (code points), the last replaced by `…` when clipped. */
export function clip(s: string, max: number): string {
  const chars = Array.from(s)
  return chars.length <= max ? s : `${chars.slice(0, max - 1).join('')}…`
}

/** C `isspace` in the "C" locale: the only characters trimmed. */
const SPACE = /^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g

function trim(s: string): string {
  return s.replace(SPACE, '')
}

function fail(kind: DevargErrorKind, key: string, value: string): never {
  throw new DevargsError(kind, key, value)
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
  if (!(DEVARG_KEYS as readonly string[]).includes(key)) fail('unknown_key', key, value)
  if (value === '') fail('empty_value', key, value)
  const n = strtoul(value)
  if (n === null) fail('not_a_number', key, value)
  switch (key as DevargKey) {
    case 'latency':
      if (n >= LATENCY_LIMIT_US) fail('latency_range', key, value)
      out.latency = n
      return
    case 'rx_copybreak':
    case 'tx_copybreak':
      if (n > COPYBREAK_MAX) fail('copybreak_range', key, value)
      if (key === 'rx_copybreak') out.rxCopybreak = n
      else out.txCopybreak = n
      return
    case 'rx_extmbuf_enable':
    case 'numa_aware':
      if (n > 1) fail('not_a_flag', key, value)
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
      if (trim(item) === '') continue
      const eq = item.indexOf('=')
      const key = trim(eq < 0 ? item : item.slice(0, eq))
      const value = eq < 0 ? '' : trim(item.slice(eq + 1))
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
    else if (typeof raw === 'number') value = Number.isInteger(raw) && raw >= 0 ? String(raw) : fail('not_a_number', key, String(raw))
    else if (typeof raw === 'string') value = trim(raw)
    else fail('not_a_number', key, String(raw))
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
