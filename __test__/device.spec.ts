/**
 * The driver through the addon and the facade against the in-process emulator: open/close/reopen, bursts both ways
 * reconciled with the emulator's own counters, metadata round trip (checked on the wire by the capture backend),
 * zero-copy receive and release, link events in order, error codes.
 */
import test from 'ava'
import * as native from '../binding.js'
import { META_WORDS, DESC_WORDS, NetvscError, type LinkEvent, type VfEvent, decodeRxMeta, encodeTxMeta, open, openSync } from '../src/index.js'
import { MAC, emulator, udpFrame, waitFor } from './helpers.js'

test.serial('open, info, close (idempotent), use after close, reopen', async (t) => {
  const { emu, dir, dispose } = emulator({ mac: '00:15:5d:12:34:56' })
  try {
    const dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const info = dev.info()
    t.is(info.mac, '00:15:5d:12:34:56')
    t.is(info.mtu, 1500)
    t.is(info.queues, 1)
    t.true(dev.started)
    t.is(emu.stats().packetFilter, dev.packetFilter, 'host applied the filter the driver set')
    t.is((await dev.link()).up, true)
    const again = await t.throwsAsync(open(emu.uuid, { root: dir }), { instanceOf: NetvscError })
    t.is(again?.code, 'ERR_NETVSC_QUEUE_BUSY')
    dev.close()
    dev.close()
    t.true(dev.closed)
    t.is(t.throws(() => dev.info(), { instanceOf: NetvscError })?.code, 'ERR_NETVSC_CLOSED')
    t.is(t.throws(() => dev.queue(0), { instanceOf: NetvscError })?.code, 'ERR_NETVSC_CLOSED')
    t.is(emu.stats().packetFilter, 0, 'close set filter 0 on the host')
    using dev2 = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    t.is(dev2.info().mac, '00:15:5d:12:34:56')
  } finally {
    dispose()
  }
})

test.serial('tx burst: every frame reaches the host, counts agree on both sides', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'sink' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const n = 32
    const sizes = Array.from({ length: n }, (_, i) => 60 + i * 13)
    const buf = new Uint8Array(sizes.reduce((a, b) => a + b, 0))
    const lens = Uint32Array.from(sizes)
    const meta = new Uint32Array(n * META_WORDS)
    let off = 0
    for (const s of sizes) {
      buf.set(udpFrame(s, MAC, s), off)
      off += s
    }
    let total = 0
    for (let round = 0; round < 10; round++) {
      let sent = 0
      while (sent < n) sent += q.txBurst(buf.subarray(sizes.slice(0, sent).reduce((a, b) => a + b, 0)), lens.subarray(sent), meta.subarray(sent * META_WORDS), n - sent)
      total += sent
    }
    await waitFor('tx completions', 5000, () => (q.pollCompletions(), q.txInFlight === 0))
    const bytes = 10 * buf.length
    const host = emu.stats().totals
    t.is(host.guestToHostFrames, total)
    t.is(host.guestToHostBytes, bytes)
    const s = dev.stats()
    t.is(s.opackets, total)
    t.is(s.obytes, bytes)
    t.is(dev.xstats()['tx_q0_good_packets'], total)
  } finally {
    dispose()
  }
})

test.serial('rx burst over loopback returns the frames sent, byte for byte', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const n = 20
    const frames = Array.from({ length: n }, (_, i) => udpFrame(64 + i * 50, MAC, i))
    const buf = new Uint8Array(frames.reduce((a, f) => a + f.length, 0))
    let off = 0
    for (const f of frames) (buf.set(f, off), (off += f.length))
    t.is(q.txBurst(buf, Uint32Array.from(frames.map((f) => f.length)), new Uint32Array(n * META_WORDS), n), n)
    const rbuf = new Uint8Array(4096)
    const lens = new Uint32Array(8)
    const meta = new Uint32Array(8 * META_WORDS)
    const got: Uint8Array[] = []
    await waitFor('looped frames', 5000, () => {
      const k = q.rxBurst(rbuf, lens, meta)
      let o = 0
      for (let i = 0; i < k; i++) (got.push(rbuf.slice(o, o + (lens[i] ?? 0))), (o += lens[i] ?? 0))
      q.pollCompletions()
      return got.length >= n
    })
    t.deepEqual(got.map((g) => Buffer.from(g).toString('hex')), frames.map((f) => Buffer.from(f).toString('hex')))
    const host = emu.stats().totals
    t.is(host.hostToGuestFrames, n)
    t.is(dev.stats().ipackets, n)
    const small = t.throws(() => {
      t.is(q.txBurst(frames[19]!, Uint32Array.of(frames[19]!.length), new Uint32Array(4), 1), 1)
      const until = Date.now() + 3000
      while (Date.now() < until) q.rxBurst(new Uint8Array(100), lens, meta)
    }, { instanceOf: NetvscError })
    t.is(small?.code, 'ERR_NETVSC_INVALID_ARG', 'a frame larger than the buffer is reported, not truncated')
  } finally {
    dispose()
  }
})

async function rxTagged(t: import('ava').ExecutionContext): Promise<Array<number | null>> {
  const { emu, dir, dispose } = emulator({ backend: 'capture' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const plain = Buffer.from(udpFrame(100, MAC))
    for (const tci of [42, 0x2005, 0xe123]) {
      emu.inject(Buffer.concat([plain.subarray(0, 12), Buffer.from([0x81, 0x00, tci >> 8, tci & 0xff]), plain.subarray(12)]))
    }
    const rbuf = new Uint8Array(2048)
    const lens = new Uint32Array(4)
    const rmeta = new Uint32Array(4 * META_WORDS)
    const tcis: Array<number | null> = []
    await waitFor('injected frames', 5000, () => {
      const k = q.rxBurst(rbuf, lens, rmeta)
      for (let i = 0; i < k; i++) {
        t.is(lens[i], 100)
        t.deepEqual(Buffer.from(rbuf.subarray(i * 100, i * 100 + 100)), plain)
        tcis.push(decodeRxMeta(rmeta, i).vlanTci)
      }
      return tcis.length >= 3
    })
    return tcis
  } finally {
    dispose()
  }
}

test.serial('metadata round trip: tagged frames arrive untagged, with a VLAN word', async (t) => {
  const tcis = await rxTagged(t)
  t.is(tcis.length, 3)
  t.true(tcis.every((v) => v !== null))
})

// The IEEE_8021Q PPI carries the NDIS layout (protocol.md: priority b0–2, CFI b3, VID b4–15) both ways; these two
// tests caught the emulator using the raw TCI (fixed in hv-emu 9c03900).
test.serial('metadata round trip: rx TCI values exact, priority included', async (t) => {
  t.deepEqual(await rxTagged(t), [42, 0x2005, 0xe123])
})

async function txTagged(tci: number): Promise<Buffer> {
  const { emu, dir, dispose } = emulator({ backend: 'capture' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const f = udpFrame(100, [2, 0, 0, 0, 0, 7])
    const meta = new Uint32Array(META_WORDS)
    encodeTxMeta(meta, 0, { vlanTci: tci })
    if (q.txBurst(f, Uint32Array.of(100), meta, 1) !== 1) throw new Error('tx refused')
    await waitFor('captured frame', 5000, () => (q.pollCompletions(), emu.captured().length === 1))
    return emu.captured()[0]!
  } finally {
    dispose()
  }
}

test.serial('metadata round trip: tx VLAN request becomes an 802.1Q tag on the wire (VID only)', async (t) => {
  const wire = await txTagged(0x0005)
  t.is(wire.length, 104)
  t.is(wire.readUInt16BE(12), 0x8100)
  t.is(wire.readUInt16BE(14), 0x0005)
  t.deepEqual(wire.subarray(16), Buffer.from(udpFrame(100, [2, 0, 0, 0, 0, 7]).subarray(12)))
})

test.serial('metadata round trip: tx TCI with priority survives to the wire', async (t) => {
  const wire = await txTagged(0x2005)
  t.is(wire.readUInt16BE(14), 0x2005)
})

test.serial('zero-copy rx: descriptors into the receive region, release hands buffers back to the host', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, devargs: { rx_extmbuf_enable: 1, rx_copybreak: 128 } })
    t.true(dev.info().devargs.rxExtmbufEnable)
    const q = dev.queue(0)
    const frames = [udpFrame(400, MAC, 1), udpFrame(80, MAC, 2), udpFrame(300, MAC, 3)]
    const buf = Buffer.concat(frames.map((f) => Buffer.from(f)))
    t.is(q.txBurst(buf, Uint32Array.from(frames.map((f) => f.length)), new Uint32Array(3 * META_WORDS), 3), 3)
    const region = q.recvRegion()
    t.is(q.recvRegion(), region, 'the region is exposed once per queue')
    const descs = new Uint32Array(8 * DESC_WORDS)
    const meta = new Uint32Array(8 * META_WORDS)
    const copyBuf = new Uint8Array(1024)
    const seen: Array<{ d: number[]; bytes: Buffer }> = []
    const all = new Uint32Array(8 * DESC_WORDS)
    await waitFor('zero-copy frames', 5000, () => {
      const k = q.rxBurstZeroCopy(descs, meta, copyBuf)
      for (let i = 0; i < k; i++) {
        const d = Array.from(descs.subarray(i * DESC_WORDS, (i + 1) * DESC_WORDS))
        const [off = 0, len = 0, , flags = 0] = d
        const src = flags & 1 ? region : copyBuf
        seen.push({ d, bytes: Buffer.from(src.subarray(off, off + len)) })
        all.set(d, (seen.length - 1) * DESC_WORDS)
      }
      q.pollCompletions()
      return seen.length >= 3
    })
    t.deepEqual(seen.map((s) => s.bytes.toString('hex')), frames.map((f) => Buffer.from(f).toString('hex')))
    t.deepEqual(seen.map((s) => s.d[3]), [1, 0, 1], 'frames above rx_copybreak are views, the short one is copied')
    t.is(q.viewsOutstanding, 2)
    t.is(q.release(all, 3), 2)
    t.is(q.release(all, 3), 0, 'releasing twice is ignored')
    t.is(q.viewsOutstanding, 0)
    await waitFor('host buffers back', 5000, () => (q.pollCompletions(), (emu.stats() as { recvOutstanding?: number }).recvOutstanding === 0))
    t.pass()
  } finally {
    dispose()
  }
})

test.serial('link and speed events arrive in order through the EventEmitter', async (t) => {
  const { emu, dir, dispose } = emulator()
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const seen: string[] = []
    dev.on('link', (e: LinkEvent) => seen.push(e.reason === 'media' ? (e.up ? 'up' : 'down') : `speed ${e.speedMbps}`))
    emu.setLink(false)
    emu.setLink(true)
    emu.setLinkSpeed(25_000)
    emu.setLink(false)
    await waitFor('four events', 5000, () => seen.length >= 4)
    t.deepEqual(seen, ['down', 'up', 'speed 25000', 'down'])
    t.is((await dev.link()).up, false)
  } finally {
    dispose()
  }
})

test.serial('vf events: an offered VF that never appears is reported, retried, given up; vfInfo and xstats follow', async (t) => {
  // A MAC no netdev of this machine has, so pairing can only give up (the synthetic path is unaffected).
  const { emu, dir, dispose } = emulator({ mac: '00:15:5d:7e:57:01' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, vf: { retryMs: 20, retries: 3, prefer: 'af_packet' } })
    t.is(dev.vfInfo(), null)
    const seen: VfEvent[] = []
    dev.on('vf', (e: VfEvent) => seen.push(e))
    t.true(emu.offerVf(true, 42))
    await waitFor('the give-up', 5000, () => seen.some((e) => e.kind === 'failure'))
    t.deepEqual(
      seen.map((e) => e.kind),
      ['association', 'state', 'failure'],
    )
    const st = seen[1]
    if (st?.kind !== 'state') return t.fail()
    t.is(st.state, 'offered')
    t.is(st.serial, 42)
    t.is(st.iface, null)
    t.true(Math.abs(st.at - Date.now()) < 60_000)
    const f = seen[2]
    if (f?.kind !== 'failure') return t.fail()
    t.is(f.failure, 'pairing_gave_up')
    t.is(f.detail, 3)
    t.like(dev.vfInfo(), { state: 'offered', serial: 42, iface: null, switched: false, queues: 0 })
    t.is(dev.xstats()['vf_pair_attempts'], 3)
    t.is(dev.xstats()['vf_switches'], 0)
  } finally {
    dispose()
  }
  await t.throwsAsync(open('x', { vf: { prefer: 'dpdk' as never } }), { code: 'ERR_NETVSC_INVALID_ARG' })
  await t.throwsAsync(open('x', { vf: { bogus: 1 } as never }), { message: /vf\.bogus/ })
})

test.serial('async iteration yields received bursts', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const f = udpFrame(64, MAC)
    q.txBurst(Buffer.concat([f, f, f].map((x) => Buffer.from(x))), Uint32Array.of(64, 64, 64), new Uint32Array(12), 3)
    let n = 0
    for await (const batch of q.bursts({ burst: 8 })) {
      n += batch.count
      t.is(batch.lens[0], 64)
      if (n >= 3) break
    }
    t.is(n, 3)
  } finally {
    dispose()
  }
})

test.serial('error codes: not found, bad options, queue busy, no such queue, native devargs agree', async (t) => {
  const { emu, dir, dispose } = emulator()
  try {
    const code = (fn: () => unknown) => t.throws(fn, { instanceOf: NetvscError })?.code
    const codeAsync = async (p: Promise<unknown>) => (await t.throwsAsync(p, { instanceOf: NetvscError }))?.code
    t.is(await codeAsync(open('00000000-0000-0000-0000-000000000000', { root: dir })), 'ERR_NETVSC_DEVICE_NOT_FOUND')
    t.is(await codeAsync(open(emu.uuid, { root: dir, queues: 0 })), 'ERR_NETVSC_INVALID_ARG')
    t.is(await codeAsync(open(emu.uuid, { root: dir, bogus: 1 } as never)), 'ERR_NETVSC_INVALID_ARG')
    t.is(await codeAsync(open(emu.uuid, { root: dir, devargs: 'latency=99999' })), 'ERR_NETVSC_DEVARGS')
    t.is(code(() => openSync(emu.uuid, { root: dir, devargs: 'latency=99999' })), 'ERR_NETVSC_DEVARGS', 'openSync throws the same codes')
    const nativeErr = t.throws(() => native.NativeDevice.open(emu.uuid, { root: dir, devargs: 'latency=99999' }))
    t.is((nativeErr as { code?: string }).code, 'ERR_NETVSC_DEVARGS')
    t.is(nativeErr?.message, 'devargs: key `latency` value `99999`: latency must be below 6553 us')
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    dev.queue(0)
    t.is(dev.queue(0), dev.queue(0), 'the facade hands out its one Queue per index')
    const nativeCode = (fn: () => unknown) => (t.throws(fn) as { code?: string } | undefined)?.code
    t.is(nativeCode(() => native.openQueue(emu.uuid, 0, dir)), 'ERR_NETVSC_QUEUE_BUSY')
    t.is(code(() => dev.queue(5)), 'ERR_NETVSC_NOT_OPEN')
    t.is(nativeCode(() => native.openQueue('11111111-1111-1111-1111-111111111111', 0, dir)), 'ERR_NETVSC_NOT_OPEN')
    t.is(code(() => dev.queue(0).txBurst(new Uint8Array(10), Uint32Array.of(64), new Uint32Array(4), 1)), 'ERR_NETVSC_INVALID_ARG')
  } finally {
    dispose()
  }
})
