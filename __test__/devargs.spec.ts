/** parseDevargs: every key, the defaults, bases, each error message (same text as the Rust driver's). */
import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as native from '../binding.js'
import {
  DEVARG_KEYS,
  DEVARGS_DEFAULTS,
  DEVARGS_QUOTE_MAX,
  DevargsError,
  NetvscError,
  clip,
  formatDevargs,
  parseDevargs,
  strtoul,
} from '../src/index.js'

test('empty input gives DPDK defaults', (t) => {
  t.deepEqual(parseDevargs(''), { latency: 50, rxCopybreak: 256, txCopybreak: 512, rxExtmbufEnable: false, numaAware: false })
  t.deepEqual(parseDevargs(), DEVARGS_DEFAULTS)
  t.deepEqual(parseDevargs({}), DEVARGS_DEFAULTS)
  t.deepEqual(parseDevargs(' , ,'), DEVARGS_DEFAULTS)
})

test('every key in DPDK syntax, with strtoul bases', (t) => {
  t.deepEqual(parseDevargs('latency=0x10,rx_copybreak=0400,tx_copybreak=0,rx_extmbuf_enable=1,numa_aware=1'), {
    latency: 16,
    rxCopybreak: 256,
    txCopybreak: 0,
    rxExtmbufEnable: true,
    numaAware: true,
  })
  t.is(parseDevargs('latency=6552').latency, 6552)
  t.is(parseDevargs('tx_copybreak=65536').txCopybreak, 65536)
  t.is(parseDevargs(' latency = 7 ').latency, 7)
  t.is(parseDevargs('latency=1,latency=2').latency, 2, 'last one wins')
})

test('object form with DPDK key names', (t) => {
  t.deepEqual(parseDevargs({ latency: 20, rx_copybreak: '0x100', rx_extmbuf_enable: true, numa_aware: false, tx_copybreak: 64 }), {
    latency: 20,
    rxCopybreak: 256,
    txCopybreak: 64,
    rxExtmbufEnable: true,
    numaAware: false,
  })
})

test('formatDevargs round-trips', (t) => {
  const d = parseDevargs('latency=9,rx_extmbuf_enable=1')
  t.is(formatDevargs(d), 'latency=9,rx_copybreak=256,tx_copybreak=512,rx_extmbuf_enable=1,numa_aware=0')
  t.deepEqual(parseDevargs(formatDevargs(d)), d)
})

test('each error names the key and value, with the Rust driver wording', (t) => {
  const cases: Array<[string | Record<string, unknown>, string]> = [
    ['bogus=1', 'devargs: key `bogus` value `1`: unknown key'],
    ['latency=', 'devargs: key `latency` value ``: empty value'],
    ['latency', 'devargs: key `latency` value ``: empty value'],
    ['latency=12ms', 'devargs: key `latency` value `12ms`: not a number'],
    ['latency=-1', 'devargs: key `latency` value `-1`: not a number'],
    ['latency=09', 'devargs: key `latency` value `09`: not a number'],
    ['latency=0x', 'devargs: key `latency` value `0x`: not a number'],
    ['latency=6553', 'devargs: key `latency` value `6553`: latency must be below 6553 us'],
    ['rx_copybreak=65537', 'devargs: key `rx_copybreak` value `65537`: copybreak must be at most 65536'],
    ['tx_copybreak=0x10001', 'devargs: key `tx_copybreak` value `0x10001`: copybreak must be at most 65536'],
    ['rx_extmbuf_enable=2', 'devargs: key `rx_extmbuf_enable` value `2`: flag must be 0 or 1'],
    ['numa_aware=01x', 'devargs: key `numa_aware` value `01x`: not a number'],
    [{ latency: -3 }, 'devargs: key `latency` value `-3`: not a number'],
    [{ latency: 1.5 }, 'devargs: key `latency` value `1.5`: not a number'],
    [{ rxCopybreak: 1 }, 'devargs: key `rxCopybreak` value `1`: unknown key'],
  ]
  for (const [input, message] of cases) {
    const err = t.throws(() => parseDevargs(input as never), { instanceOf: NetvscError }, JSON.stringify(input))
    t.is(err?.code, 'ERR_NETVSC_DEVARGS')
    t.is(err?.message, message)
  }
  t.throws(() => parseDevargs(42 as never), { message: /string or an object/ })
})

test('strtoul semantics', (t) => {
  t.is(strtoul('0'), 0)
  t.is(strtoul('010'), 8)
  t.is(strtoul('0x1F'), 31)
  t.is(strtoul('0x'), null)
  t.is(strtoul(' 1'), null)
  t.is(strtoul('99999999999999999999999'), null)
})

// ---- One set of rules: the shared table (also run by crates/netvsc/tests/devargs_cases.rs) and a property test
// holding the TypeScript parser to the Rust one (through the addon) on random strings.

interface DevargsCase {
  input?: string
  parts?: Array<[string, number]>
  ok?: Record<string, number | boolean>
  error?: { kind: string; message: string }
}

const cases: DevargsCase[] = JSON.parse(fs.readFileSync(path.join(__dirname, '../crates/netvsc/tests/devargs_cases.json'), 'utf8'))
const inputOf = (c: DevargsCase): string => c.input ?? (c.parts ?? []).map(([s, n]) => s.repeat(n)).join('')

test('every case of the shared devargs table', (t) => {
  t.true(cases.length >= 50)
  for (const c of cases) {
    const input = inputOf(c)
    const shown = JSON.stringify(input.slice(0, 40))
    if (c.ok) {
      const want = {
        latency: c.ok.latency,
        rxCopybreak: c.ok.rx_copybreak,
        txCopybreak: c.ok.tx_copybreak,
        rxExtmbufEnable: c.ok.rx_extmbuf_enable,
        numaAware: c.ok.numa_aware,
      }
      t.deepEqual(parseDevargs(input), want, shown)
      t.deepEqual({ ...native.parseDevargsNative(input) }, want, `native ${shown}`)
    } else {
      const err = t.throws(() => parseDevargs(input), { instanceOf: DevargsError }, shown)
      t.is(err?.code, 'ERR_NETVSC_DEVARGS')
      t.is(err?.kind as string | undefined, c.error?.kind, shown)
      t.is(err?.message, c.error?.message ?? '', shown)
      const nerr = t.throws(() => native.parseDevargsNative(input), undefined, `native ${shown}`) as { code?: string; message?: string } | undefined
      t.is(nerr?.code, 'ERR_NETVSC_DEVARGS')
      t.is(nerr?.message, c.error?.message, `native ${shown}`)
    }
  }
})

test('an error quotes at most 64 characters of a 10 KB input', (t) => {
  const input = `latency=${'9'.repeat(10_000)}`
  const err = t.throws(() => parseDevargs(input), { instanceOf: DevargsError })
  t.is(err?.message, `devargs: key \`latency\` value \`${'9'.repeat(31)}…\`: not a number`)
  t.true(Array.from(err?.key ?? '').length + Array.from(err?.value ?? '').length <= DEVARGS_QUOTE_MAX)
  t.is(clip('abc', 3), 'abc')
  t.is(clip('abcd', 3), 'ab…')
  t.is(clip('😀😀😀😀', 3), '😀😀…', 'counts code points, never splits a surrogate pair')
})

/** mulberry32: a small seeded PRNG, so a failure reproduces from the printed seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const PIECES = [
  ...DEVARG_KEYS,
  'LATENCY', 'latency ', 'rx_copy', 'bogus', '',
  '=', '=', ',', ',', ',,', '==',
  '0', '1', '7', '9', '00', '01', '08', '0x', '0X', '0x1f', 'ff', '6552', '6553', '65536', '65537', '-1', '+1',
  '18446744073709551615', '18446744073709551616', '99999999999999999999999',
  // Whitespace classes: C isspace (trimmed), Unicode spaces and line ends (never trimmed), invisibles.
  ' ', '\t', '\n', '\r', '\v', '\f', '\u00a0', '\u0085', '\ufeff', '\u1680', '\u2000', '\u200a', '\u200b', '\u2028',
  '\u2029', '\u202f', '\u205f', '\u3000', '\u180e',
  // Other Unicode: accents, digits of other scripts, astral characters, NUL.
  'é', '\uff11', '\u0661', '😀', '\u{10ffff}', '\u0000', 'ß', 'İ',
]

function randomDevargs(rand: () => number): string {
  const n = Math.floor(rand() * 12)
  let s = ''
  for (let i = 0; i < n; i++) {
    const r = rand()
    const piece = PIECES[Math.floor(rand() * PIECES.length)] ?? ''
    if (r < 0.85) s += piece
    else if (r < 0.95) s += String.fromCodePoint(Math.floor(rand() * 0x3000))
    else s += piece.repeat(1 + Math.floor(rand() * 3000))
  }
  return s
}

test('property: the TypeScript and Rust parsers agree on random strings (verdict, values, message)', (t) => {
  const seed = Number(process.env.DEVARGS_SEED ?? 0x9e3779b9)
  const rand = prng(seed)
  let oks = 0
  for (let i = 0; i < 8_000; i++) {
    const input = randomDevargs(rand)
    let ts: { ok: unknown } | { message: string; code: string }
    let rs: { ok: unknown } | { message: string; code: string }
    try {
      ts = { ok: parseDevargs(input) }
    } catch (e) {
      ts = { message: (e as Error).message, code: (e as NetvscError).code }
    }
    try {
      rs = { ok: { ...native.parseDevargsNative(input) } }
    } catch (e) {
      rs = { message: (e as Error).message, code: (e as { code: string }).code }
    }
    if (JSON.stringify(ts) !== JSON.stringify(rs)) {
      t.fail(`seed ${seed} case ${i}: ${JSON.stringify(input.slice(0, 200))}: ts ${JSON.stringify(ts)} rust ${JSON.stringify(rs)}`)
      return
    }
    if ('ok' in ts) oks++
    else t.true(ts.message.length < 140, `message too long: ${ts.message.length}`)
  }
  t.true(oks > 80, `${oks} accepted inputs: the generator must reach the accepting paths too`)
})
