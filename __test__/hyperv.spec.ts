/** The emulator's Hyper-V behaviour switches through the TypeScript API and `netvsc emulate`, each observed from the
 * driver's side (the Rust tests in crates/netvsc/tests/hyperv.rs cover the defaults in depth). */
import test from 'ava'
import { META_WORDS, MTU_MAX, MTU_MIN, NetvscError, open, type LinkEvent } from '../src/index.js'
import { MAC, emulator, runCli, udpFrame, waitFor } from './helpers.js'

const meta = new Uint32Array(32 * META_WORDS)

/** Receives on `q` until `n` frames arrived (or `ms` passed); their lengths. */
async function lengths(q: { rxBurst: (b: Uint8Array, l: Uint32Array, m: Uint32Array) => number }, n: number, ms: number): Promise<number[]> {
  const buf = new Uint8Array(32 * 9216)
  const lens = new Uint32Array(32)
  const got: number[] = []
  await waitFor(`${n} frames`, ms, () => {
    const k = q.rxBurst(buf, lens, meta)
    for (let i = 0; i < k; i++) got.push(lens[i]!)
    return got.length >= n
  })
  return got
}

test.serial('linkDelayMs 0 and notifyLink: both halves of a quick flap arrive together', async (t) => {
  const { emu, dir, dispose } = emulator({ linkDelayMs: 0 })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const seen: string[] = []
    dev.on('link', (e: LinkEvent) => e.reason === 'media' && seen.push(e.up ? 'up' : 'down'))
    emu.notifyLink([false, true])
    await waitFor('down and up', 3000, () => seen.length >= 2)
    t.deepEqual(seen, ['down', 'up'])
    t.true(emu.stats().linkUp)
  } finally {
    dispose()
  }
})

test.serial("filterNone: 'drop' counts frames that arrive before the filter, 'hold' delivers them after it", async (t) => {
  for (const mode of ['drop', 'hold'] as const) {
    const { emu, dir, dispose } = emulator({ backend: 'capture', filterNone: mode })
    try {
      using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, start: false })
      for (let i = 0; i < 5; i++) emu.inject(udpFrame(100, MAC, i))
      if (mode === 'drop') await waitFor('filterNone drops', 5000, () => emu.stats().totals.drops.filterNone === 5)
      await dev.startAsync()
      emu.inject(udpFrame(120, MAC))
      const got = await lengths(dev.queue(0), mode === 'drop' ? 1 : 6, 5000)
      t.deepEqual(got, mode === 'drop' ? [120] : [100, 100, 100, 100, 100, 120], mode)
    } finally {
      dispose()
    }
  }
})

test.serial('mtuCheck: frames over the MTU + 14 are dropped by default and pass with mtuCheck false', async (t) => {
  for (const mtuCheck of [true, false]) {
    const { emu, dir, dispose } = emulator({ backend: 'loopback', mtuCheck })
    try {
      using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
      const q = dev.queue(0)
      const lens = new Uint32Array([1515, 1514])
      const frames = new Uint8Array(1515 + 1514)
      frames.set(udpFrame(1515, MAC), 0)
      frames.set(udpFrame(1514, MAC), 1515)
      t.is(q.txBurst(frames, lens, new Uint32Array(2 * META_WORDS), 2), 2)
      const got = await lengths(q, mtuCheck ? 1 : 2, 5000)
      t.deepEqual(got, mtuCheck ? [1514] : [1515, 1514])
      t.is(emu.stats().totals.drops.txTooLarge, mtuCheck ? 1 : 0)
    } finally {
      dispose()
    }
  }
})

test.serial('setMtu outside MTU_MIN..MTU_MAX is refused before any host round trip', async (t) => {
  const { emu, dir, dispose } = emulator()
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, start: false })
    t.deepEqual([MTU_MIN, MTU_MAX], [1500, 9202])
    for (const bad of [68, 1499, 9203]) {
      const err = await dev.setMtu(bad).then(
        () => null,
        (e: unknown) => e,
      )
      t.true(err instanceof NetvscError && err.code === 'ERR_NETVSC_INVALID_ARG', String(err))
    }
    t.is(emu.stats().ndisConfig?.mtu, 1514)
  } finally {
    dispose()
  }
})

test.serial("sendTable: the host's send indirection table reaches dev.sendTable(); 'off' sends none", async (t) => {
  for (const sendTable of ['hyperv', 'off'] as const) {
    const { emu, dir, dispose } = emulator({ maxQueues: 4, sendTable })
    try {
      using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, queues: 4 })
      t.deepEqual(dev.sendTable(), sendTable === 'off' ? null : Array.from({ length: 16 }, (_, i) => i % 4), sendTable)
    } finally {
      dispose()
    }
  }
})

test.serial('monitored false: channels without a monitor id carry traffic on two queues', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback', maxQueues: 2, monitored: false })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, queues: 2 })
    const f = udpFrame(200, MAC)
    for (const q of dev.queues()) t.is(q.txBurst(f, new Uint32Array([200]), new Uint32Array(META_WORDS), 1), 1)
    let got = 0
    const buf = new Uint8Array(32 * 2048)
    const lens = new Uint32Array(32)
    await waitFor('both frames back', 5000, () => {
      for (const q of dev.queues()) got += q.rxBurst(buf, lens, meta)
      return got >= 2
    })
    const s = emu.stats()
    t.deepEqual(
      s.channels.map((c) => [c.monitorId, c.guestToHostFrames]),
      [
        [null, 1],
        [null, 1],
      ],
    )
  } finally {
    dispose()
  }
})

test.serial('slowHost: a bring-up waits out the held replies', async (t) => {
  const { emu, dir, dispose } = emulator({ slowHost: { ms: 5, each: { 'rndis-init': 400 } } })
  try {
    const t0 = Date.now()
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const took = Date.now() - t0
    t.log(`bring-up took ${took} ms`)
    t.true(took >= 400)
    t.true(emu.stats().delayedReplies > 5)
    t.true((await dev.link()).up)
  } finally {
    dispose()
  }
})

test('netvsc emulate: Hyper-V options are listed and bad values exit 2 with one line', (t) => {
  const help = runCli(['emulate', '--help'])
  for (const o of ['--link-delay', '--filter-none', '--no-mtu-check', '--ring-headroom', '--send-table', '--no-monitor', '--slow-host']) {
    t.regex(help.stdout, new RegExp(o), o)
  }
  const cases: Array<[string[], RegExp]> = [
    [['--filter-none', 'keep'], /--filter-none' must be drop\|hold/],
    [['--send-table', 'maybe'], /--send-table' must be hyperv\|openvmm\|off/],
    [['--link-delay', '700000'], /--link-delay' must be 0..600000/],
    [['--slow-host', 'nope=5'], /unknown request 'nope'/],
    [['--slow-host', 'init=soon'], /--slow-host' needs an integer/],
  ]
  for (const [args, reason] of cases) {
    const r = runCli(['emulate', '--dir', '/tmp/netvsc-hyperv-x', ...args])
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
    t.regex(r.stderr, /^netvsc: [^\n]+\n$/)
    t.regex(r.stderr, reason, args.join(' '))
  }
})
