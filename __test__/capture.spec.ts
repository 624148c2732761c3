/**
 * Device capture (`startCapture`/`stopCapture`) against the in-process emulator: what the driver transmits and then
 * receives back over the loopback backend lands in the pcap in order and byte for byte, as read back by src/pcap.ts
 * and by tshark; the count limit, close() and the zero-copy path; no capture, no file writes.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { DESC_WORDS, META_WORDS, NetvscError, open, type Queue } from '../src/index.js'
import { readPcap, readPcapRecords } from '../src/pcap.js'
import { MAC, emulator, runCli, udpFrame, waitFor } from './helpers.js'

/** `n` distinct frames: sizes and payload seeds differ per frame. */
function distinctFrames(n: number, seed: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => udpFrame(60 + ((i * 97) % 1400), MAC, seed + i * 7))
}

/** Sends every frame, retrying what the driver did not accept. */
async function sendAll(q: Queue, frames: Uint8Array[]): Promise<void> {
  let i = 0
  await waitFor('tx accepted', 5000, () => {
    const rest = frames.slice(i)
    const buf = Buffer.concat(rest.map((f) => Buffer.from(f)))
    i += q.txBurst(buf, Uint32Array.from(rest.map((f) => f.length)), new Uint32Array(rest.length * META_WORDS), rest.length)
    q.pollCompletions()
    return i === frames.length
  })
}

async function receive(q: Queue, n: number): Promise<Buffer[]> {
  const buf = new Uint8Array(8 * 1514)
  const lens = new Uint32Array(8)
  const meta = new Uint32Array(8 * META_WORDS)
  const got: Buffer[] = []
  await waitFor(`${n} looped frames`, 5000, () => {
    const k = q.rxBurst(buf, lens, meta)
    let o = 0
    for (let i = 0; i < k; i++) (got.push(Buffer.from(buf.slice(o, o + (lens[i] ?? 0)))), (o += lens[i] ?? 0))
    q.pollCompletions()
    return got.length >= n
  })
  return got
}

const hex = (frames: Array<Uint8Array | Buffer>) => frames.map((f) => Buffer.from(f).toString('hex'))

function tshark(file: string, fields: string[]): string[][] | null {
  const r = spawnSync('tshark', ['-n', '-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', timeout: 30_000 })
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') return null
  if (r.status !== 0) throw new Error(`tshark failed (${r.status}): ${r.stderr}`)
  return r.stdout.trimEnd().split('\n').map((l) => l.split('\t'))
}

test.serial('capture holds what was sent then what came back, in order, exact bytes; tshark agrees', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const file = path.join(dir, 'both.pcap')
    const before = Date.now()
    const cap = dev.startCapture(file)
    t.true(dev.capturing)
    const n = 24
    const sent = distinctFrames(n, 1)
    await sendAll(q, sent)
    t.is(cap.frames, n, 'tx frames are recorded as the driver accepts them')
    const back = await receive(q, n)
    t.deepEqual(hex(back), hex(sent), 'the loopback host returned every frame')
    t.is(dev.stopCapture(), 2 * n)
    t.false(cap.active)
    t.false(dev.capturing)
    t.is(emu.stats().totals.guestToHostFrames, n, 'the host saw each frame once')

    const recs = readPcapRecords(file)
    t.deepEqual(hex(recs.map((r) => r.data)), hex([...sent, ...back]))
    t.deepEqual(recs.map((r) => r.origLen), [...sent, ...back].map((f) => f.length))
    const times = recs.map((r) => r.sec * 1e6 + r.usec)
    t.true(times.every((v, i) => i === 0 || v >= times[i - 1]!), 'timestamps never go back')
    t.true(times[0]! >= before * 1000 - 1000 && times.at(-1)! <= Date.now() * 1000 + 1000, 'timestamps are wall-clock µs')
    t.true(recs.every((r) => r.usec < 1_000_000))

    const rows = tshark(file, ['frame.len', 'eth.dst', 'udp.length'])
    if (rows === null) {
      t.log('SKIP: tshark not installed; the pcap was checked with src/pcap.ts only')
      return
    }
    t.deepEqual(rows.map((r) => Number(r[0])), [...sent, ...back].map((f) => f.length), 'tshark reads 2N frames of the right lengths')
    t.true(rows.every((r) => r[1] === '00:15:5d:00:00:01'))
    t.deepEqual(rows.map((r) => Number(r[2])), [...sent, ...back].map((f) => f.length - 34), 'tshark decodes the UDP headers')
  } finally {
    dispose()
  }
})

test.serial('count limit: the capture stops by itself mid-burst and records nothing more', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const file = path.join(dir, 'count.pcap')
    const n = 10
    const cap = dev.startCapture(file, { count: n + 3 })
    const sent = distinctFrames(n, 50)
    await sendAll(q, sent)
    t.true(cap.active)
    const back = await receive(q, n)
    t.false(cap.active, 'stopped after count frames')
    t.false(dev.capturing)
    t.is(cap.frames, n + 3)
    const size = fs.statSync(file).size
    await sendAll(q, distinctFrames(4, 200))
    await receive(q, 4)
    t.is(fs.statSync(file).size, size, 'traffic after the limit is not written')
    t.deepEqual(hex(readPcap(file)), hex([...sent, ...back.slice(0, 3)]))
    t.is(dev.stopCapture(), n + 3, 'stopping a finished capture reports its frames')

    const small = path.join(dir, 'small.pcap')
    const cap2 = dev.startCapture(small, { count: 5 })
    const burst = distinctFrames(9, 300)
    await sendAll(q, burst)
    await receive(q, 9)
    t.is(cap2.frames, 5)
    t.deepEqual(hex(readPcap(small)), hex(burst.slice(0, 5)), 'a limit inside one burst keeps its first frames')
    const rows = tshark(small, ['frame.len'])
    if (rows === null) t.log('SKIP: tshark not installed')
    else t.deepEqual(rows.map((r) => Number(r[0])), burst.slice(0, 5).map((f) => f.length))
  } finally {
    dispose()
  }
})

test.serial('not capturing writes nothing; a stopped capture gets no more records', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    t.false(dev.capturing)
    t.is(dev.stopCapture(), 0)
    const listing = () => fs.readdirSync(dir, { recursive: true }).map(String).sort()
    const files = listing()
    await sendAll(q, distinctFrames(6, 9))
    await receive(q, 6)
    t.deepEqual(listing(), files, 'traffic without a capture creates no file')
    const file = path.join(dir, 'empty.pcap')
    const cap = dev.startCapture(file)
    t.is(cap.stop(), 0)
    await sendAll(q, distinctFrames(6, 19))
    await receive(q, 6)
    t.is(fs.statSync(file).size, 24, 'only the pcap header')
    t.deepEqual(readPcap(file), [])
    const rows = tshark(file, ['frame.len'])
    if (rows === null) t.log('SKIP: tshark not installed')
    else t.deepEqual(rows, [['']], 'tshark reads an empty capture')
  } finally {
    dispose()
  }
})

test.serial('zero-copy receive is captured from the receive region and the copy buffer', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, devargs: { rx_extmbuf_enable: 1, rx_copybreak: 128 } })
    const q = dev.queue(0)
    const file = path.join(dir, 'zc.pcap')
    dev.startCapture(file)
    const frames = [udpFrame(400, MAC, 1), udpFrame(80, MAC, 2), udpFrame(300, MAC, 3), udpFrame(1514, MAC, 4)]
    await sendAll(q, frames)
    const descs = new Uint32Array(8 * DESC_WORDS)
    const meta = new Uint32Array(8 * META_WORDS)
    const copyBuf = new Uint8Array(2048)
    const flags: number[] = []
    await waitFor('zero-copy frames', 5000, () => {
      const k = q.rxBurstZeroCopy(descs, meta, copyBuf)
      for (let i = 0; i < k; i++) flags.push(descs[i * DESC_WORDS + 3] ?? 0)
      q.release(descs, k)
      q.pollCompletions()
      return flags.length >= frames.length
    })
    t.deepEqual(flags, [1, 0, 1, 1], 'views and a copied frame both occurred')
    t.is(dev.stopCapture(), 2 * frames.length)
    t.deepEqual(hex(readPcap(file)), hex([...frames, ...frames]))
  } finally {
    dispose()
  }
})

test.serial('close() ends the capture with a complete file; errors have codes', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    const dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const code = (fn: () => unknown) => t.throws(fn, { instanceOf: NetvscError })?.code
    t.is(code(() => dev.startCapture(path.join(dir, 'no/such/dir/x.pcap'))), 'ERR_NETVSC_IO')
    t.is(code(() => dev.startCapture('')), 'ERR_NETVSC_INVALID_ARG')
    t.is(code(() => dev.startCapture(path.join(dir, 'c.pcap'), { count: 0 })), 'ERR_NETVSC_INVALID_ARG')
    t.false(dev.capturing, 'a refused start leaves no capture running')
    const file = path.join(dir, 'closed.pcap')
    const cap = dev.startCapture(file)
    t.is(code(() => dev.startCapture(path.join(dir, 'second.pcap'))), 'ERR_NETVSC_STARTED')
    const sent = distinctFrames(5, 77)
    await sendAll(q, sent)
    const back = await receive(q, 5)
    dev.close()
    t.false(cap.active)
    t.is(cap.frames, 10)
    t.deepEqual(hex(readPcap(file)), hex([...sent, ...back]))
    t.is(code(() => dev.startCapture(file)), 'ERR_NETVSC_CLOSED')
  } finally {
    dispose()
  }
})

test('capture --help says it captures a running service, else what this process receives', (t) => {
  const r = runCli(['capture', '--help'])
  t.is(r.status, 0, r.stderr)
  t.regex(r.stdout.replace(/\s+/g, ' '), /a running service \(the device's owner\): it mirrors its bursts, both directions, into a pcapng file/)
  t.regex(r.stdout.replace(/\s+/g, ' '), /No owner: this process opens the device and records what it receives/)
})
