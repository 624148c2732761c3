/**
 * Runtime reconfiguration through the facade against the in-process emulator: `setQueues` (a Promise, the event
 * loop runs meanwhile) hands over every frame the host had delivered, exactly once and in flow order, with the
 * counts reconciled on both sides (host tx = driver rx + drops, driver tx = host rx); removed queues throw
 * ERR_NETVSC_QUEUE_REMOVED; `setRss` moves the host's steering (per-channel counts from the emulator side).
 */
import test from 'ava'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'
import { META_WORDS, NetvscError, type Netvsc, type Queue, claimedQueueCount, decodeRxMeta, open } from '../src/index.js'
import { MAC, emulator, udpFrame, waitFor } from './helpers.js'

const FLOWS = 32
const LEN = 128

/** A UDP/IPv4 frame of flow `flow` (source port 2000 + flow), its sequence number in the last 4 bytes. */
function flowFrame(flow: number, seq: number): Uint8Array {
  const f = udpFrame(LEN, MAC, flow)
  f[34] = (2000 + flow) >> 8
  f[35] = (2000 + flow) & 0xff
  f[29] = flow & 0xff // source address 10.0.0.<flow>
  new DataView(f.buffer).setUint32(LEN - 4, seq, true)
  return f
}

function inject(emu: { inject(f: Uint8Array): void }, first: number, n: number): void {
  for (let s = first; s < first + n; s++) emu.inject(flowFrame(s % FLOWS, s))
}

interface Got {
  queue: number
  seq: number
  hash: number | null
}

async function receive(qs: Queue[], want: number): Promise<Got[]> {
  const buf = new Uint8Array(64 * LEN)
  const lens = new Uint32Array(64)
  const meta = new Uint32Array(64 * META_WORDS)
  const got: Got[] = []
  await waitFor(`${want} frames`, 20_000, () => {
    for (const q of qs) {
      const n = q.rxBurst(buf, lens, meta)
      let off = 0
      for (let i = 0; i < n; i++) {
        const len = lens[i] ?? 0
        const seq = new DataView(buf.buffer, off + len - 4, 4).getUint32(0, true)
        got.push({ queue: q.index, seq, hash: decodeRxMeta(meta, i).rssHash })
        off += len
      }
    }
    return got.length >= want
  })
  return got
}

function exactlyOnceInFlowOrder(got: Got[], first: number, n: number): string | null {
  const seqs = got.map((g) => g.seq).sort((a, b) => a - b)
  for (let i = 0; i < n; i++) if (seqs[i] !== first + i) return `sequence ${first + i} missing or doubled (have ${seqs.length})`
  if (seqs.length !== n) return `${seqs.length} frames for ${n}`
  const last = new Map<number, number>()
  for (const g of got) {
    const flow = g.seq % FLOWS
    const prev = last.get(flow)
    if (prev !== undefined && prev > g.seq) return `flow ${flow}: ${g.seq} after ${prev}`
    last.set(flow, g.seq)
  }
  return null
}

function sendOn(q: Queue, n: number): void {
  const f = udpFrame(100, [0x02, 0, 0, 0, 0, 0x99], q.index)
  const buf = new Uint8Array(n * 100)
  for (let i = 0; i < n; i++) buf.set(f, i * 100)
  const lens = new Uint32Array(n).fill(100)
  const meta = new Uint32Array(n * META_WORDS)
  let sent = 0
  while (sent < n) sent += q.txBurst(buf.subarray(sent * 100), lens.subarray(sent), meta.subarray(sent * META_WORDS), n - sent)
}

function perChannel(emu: { stats(): { channels: Array<{ hostToGuestFrames: number }> } }): number[] {
  return emu.stats().channels.map((c) => c.hostToGuestFrames)
}

async function settleTx(dev: Netvsc, qs: Queue[]): Promise<void> {
  await waitFor('tx completions', 10_000, () => qs.every((q) => (q.pollCompletions(), q.txInFlight === 0)))
  void dev
}

test.serial('setQueues: a Promise; every delivered frame handed over once, in flow order; counts reconcile; removed queues throw', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'capture', maxQueues: 8 })
  try {
    using dev = await open(emu.uuid, { root: dir, queues: 4, timeoutMs: 10_000 })
    const qs = dev.queues()
    t.is(qs.length, 4)
    const n1 = 400
    inject(emu, 0, n1)
    await waitFor('host delivered', 10_000, () => emu.stats().totals.hostToGuestFrames === n1)
    t.true(perChannel(emu).every((c) => c > 0), `RSS spread the frames over the four rings: ${perChannel(emu).join(',')}`)
    for (const q of qs) sendOn(q, 20)

    let turns = 0
    const tick = (): void => {
      turns++
      if (pending) setImmediate(tick)
    }
    let pending = true
    setImmediate(tick)
    const change = dev.setQueues(2)
    t.true(change instanceof Promise)
    const got = await change
    pending = false
    t.is(got, 2)
    t.true(turns > 0, 'the event loop ran while the queues changed')
    t.log(`event-loop turns during setQueues(2): ${turns}`)
    t.is(dev.info().queues, 2)
    t.is(dev.queueCount, 2)
    t.is(emu.stats().subchannels, 1, 'the host sees one subchannel')
    const [q0, q1, q2, q3] = qs as [Queue, Queue, Queue, Queue]
    t.is(q2.removed, 2)
    t.true(q3.closed)
    t.is(q0.removed, null)
    const lens = new Uint32Array(4)
    const err = t.throws(() => q3.rxBurst(new Uint8Array(4 * LEN), lens, new Uint32Array(4 * META_WORDS)), { instanceOf: NetvscError })
    t.is(err?.code, 'ERR_NETVSC_QUEUE_REMOVED')
    t.regex(err?.message ?? '', /queue 3 .* removed: the device has 2 queue/)

    const frames = await receive([q0, q1], n1)
    t.is(exactlyOnceInFlowOrder(frames, 0, n1), null)
    await settleTx(dev, [q0, q1])
    const s = dev.stats()
    const host = emu.stats().totals
    t.is(s.ipackets + s.imissed, host.hostToGuestFrames, 'host tx = driver rx + drops')
    t.is(s.imissed, 0)
    t.is(s.opackets, 80, 'every send before the change completed')
    t.is(s.opackets, host.guestToHostFrames, 'driver tx = host rx')
    t.is(dev.xstats()['hv_tx_unsettled'], 0)

    // Grow back: the removed indexes can be claimed again.
    t.is(await dev.setQueues(4), 4)
    t.is(emu.stats().subchannels, 3)
    const again = dev.queues()
    t.is(again.length, 4)
    t.is(again[0], q0, 'the live queue objects stay the same')
    t.not(again[3], q3, 'a new queue object for a re-created index')
    q3.close() // the removed object closing later leaves the new queue 3 alone
    t.true(dev.queue(3) === again[3])
    inject(emu, n1, 400)
    const after = await receive(again, 400)
    t.is(exactlyOnceInFlowOrder(after, n1, 400), null)
    t.true(new Set(after.map((g) => g.queue)).size === 4, 'four queues receive again')
    t.is(dev.stats().ipackets, emu.stats().totals.hostToGuestFrames)
  } finally {
    dispose()
  }
})

test.serial('setRss: the host steers by the new table (per-channel counts from the emulator), channels stay open', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'capture', maxQueues: 8 })
  try {
    using dev = await open(emu.uuid, { root: dir, queues: 4, timeoutMs: 10_000 })
    const qs = dev.queues()
    t.deepEqual(dev.rss().hashTypes, ['ipv4', 'tcp_ipv4', 'ipv6', 'ipv6_ex', 'tcp_ipv6', 'tcp_ipv6_ex'])
    t.deepEqual(dev.rss().reta, Array.from({ length: 128 }, (_, i) => i % 4))
    const filters = emu.stats().packetFilterChanges
    // Frames already delivered stay where they are.
    inject(emu, 0, 100)
    await waitFor('host delivered', 10_000, () => emu.stats().totals.hostToGuestFrames === 100)
    const key = Uint8Array.from({ length: 40 }, (_, i) => (i * 29 + 5) & 0xff)
    const reta = Array.from({ length: 128 }, (_, i) => (i % 3 === 0 ? 3 : 1))
    const state = await dev.setRss({ key, reta, hashTypes: ['ipv4', 'tcp_ipv4'] })
    t.deepEqual(state.reta, reta)
    t.deepEqual(Array.from(state.key), Array.from(key))
    t.deepEqual(state.hashTypes, ['ipv4', 'tcp_ipv4'])
    t.true(state.enabled)
    const hostRss = emu.stats()['rss'] as { table: number[]; key: string; enabled: boolean }
    t.deepEqual(hostRss.table, reta, 'the host has the new table')
    t.is(hostRss.key, Buffer.from(key).toString('hex'))
    t.is(emu.stats().packetFilterChanges, filters, 'no re-initialisation')
    t.is(exactlyOnceInFlowOrder(await receive(qs, 100), 0, 100), null)

    const before = perChannel(emu)
    inject(emu, 100, 300)
    const got = await receive(qs, 300)
    t.is(exactlyOnceInFlowOrder(got, 100, 300), null)
    const driver = [0, 0, 0, 0]
    for (const g of got) {
      driver[g.queue] = (driver[g.queue] ?? 0) + 1
      t.not(g.hash, null, `frame ${g.seq} carries its hash`)
      t.is(g.queue, reta[(g.hash ?? 0) % 128] ?? -1, `frame ${g.seq}: bucket of its hash`)
    }
    const delta = perChannel(emu).map((c, i) => c - (before[i] ?? 0))
    t.deepEqual(delta, driver, 'the host steered each frame where the driver received it')
    t.is(delta[0], 0)
    t.is(delta[2], 0)
    t.true((delta[1] ?? 0) > 0 && (delta[3] ?? 0) > 0, `queues 1 and 3: ${delta.join(',')}`)

    // Refusals.
    const bad = await t.throwsAsync(dev.setRss({ reta: Array.from({ length: 128 }, () => 5) }), { instanceOf: NetvscError })
    t.is(bad?.code, 'ERR_NETVSC_CONFIG')
    t.is((await t.throwsAsync(dev.setRss({ key: new Uint8Array(39) }), { instanceOf: NetvscError }))?.code, 'ERR_NETVSC_INVALID_ARG')
    t.is((await t.throwsAsync(dev.setRss({ hashTypes: ['udp_ipv4' as never] }), { instanceOf: NetvscError }))?.code, 'ERR_NETVSC_INVALID_ARG')
    t.is((await t.throwsAsync(dev.setQueues(0), { instanceOf: NetvscError }))?.code, 'ERR_NETVSC_INVALID_ARG')
    t.deepEqual(dev.rss().reta, reta, 'a refused change changes nothing')
    t.is(dev.stats().ipackets, emu.stats().totals.hostToGuestFrames)
  } finally {
    dispose()
  }
})

test.serial("a worker's removed queue throws ERR_NETVSC_QUEUE_REMOVED at its next call and gives its claim back", async (t) => {
  const { emu, dir, dispose } = emulator({ maxQueues: 4 })
  try {
    using dev = await open(emu.uuid, { root: dir, queues: 2, timeoutMs: 10_000 })
    const file = path.join(__dirname, 'fixtures/removed-worker.ts')
    const w = new Worker(`require('tsx/cjs'); require(${JSON.stringify(file)})`, { eval: true, workerData: { uuid: emu.uuid, root: dir, index: 1 } })
    const next = (): Promise<{ ok: boolean; code?: string | null; removed?: number | null; closed?: boolean }> =>
      new Promise((resolve, reject) => {
        w.once('message', resolve)
        w.once('error', reject)
      })
    t.true((await next()).ok)
    const claimed = claimedQueueCount()
    t.is(await dev.setQueues(1), 1)
    const done = next()
    w.postMessage('poll')
    const r = await done
    t.deepEqual([r.code, r.removed, r.closed], ['ERR_NETVSC_QUEUE_REMOVED', 1, true])
    t.is(claimedQueueCount(), claimed - 1, 'the worker gave the claim back')
    await w.terminate()
    t.is(await dev.setQueues(2), 2)
    t.is(dev.queue(1).index, 1, 'index 1 can be claimed again')
  } finally {
    dispose()
  }
})
