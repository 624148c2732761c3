/** parseDevargs: every key, the defaults, bases, each error message (same text as the Rust driver's). */
import test from 'ava'
import { DEVARGS_DEFAULTS, NetvscError, formatDevargs, parseDevargs, strtoul } from '../src/index.js'

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
