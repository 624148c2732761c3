/**
 * Zero-copy transmit through the addon and the facade: frames written into `txRegion()` and sent by buffer index
 * arrive at the emulator's capture backend byte for byte (mixed sizes around tx_copybreak, GPA-direct and copied),
 * `txReclaim` returns every submitted buffer exactly once, and buffers the driver holds, bad indices and bad lengths
 * are refused with nothing sent. Views of the tx region are refused as arguments of the other bursts, and views
 * that were collected stop being listed.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { META_WORDS, NetvscError, type NetvscErrorCode, encodeTxMeta, openSync } from '../src/index.js'
import { readPcap } from '../src/pcap.js'
import { MAC, emulator, repo, scratchDir, udpFrame, waitFor } from './helpers.js'

function code(t: import('ava').ExecutionContext, f: () => unknown, want: NetvscErrorCode, what: string): string {
  const e = t.throws(f, { instanceOf: NetvscError }, what)
  t.is(e?.code, want, what)
  return e?.message ?? ''
}

test.serial('txBurstZeroCopy: byte-exact at the host, every buffer reclaimed once, reused over rounds', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'capture', mtu: 9000 })
  try {
    using dev = openSync(emu.uuid, { root: dir, timeoutMs: 5000, mtu: 9000 })
    const q = dev.queue(0)
    const region = q.txRegion({ bufSize: 16384, count: 32 })
    t.is(region.length, 32 * 16384)
    t.is(q.txRegion(), region, 'the same view on later calls')
    const sizes = [60, 64, 200, 512, 513, 1500, 4095, 4096, 4097, 9014]
    const frames = sizes.map((s, i) => udpFrame(s, MAC, i * 7))
    const submitted: number[] = []
    const reclaimed: number[] = []
    const free = Array.from({ length: 32 }, (_, i) => 31 - i)
    const out = new Uint32Array(64)
    const rounds = 5
    for (let round = 0; round < rounds; round++) {
      const idx = new Uint32Array(frames.length)
      const lens = new Uint32Array(frames.length)
      frames.forEach((f, i) => {
        const b = free.pop()!
        region.set(f, b * 16384)
        idx[i] = b
        lens[i] = f.length
        submitted.push(b)
      })
      let sent = 0
      await waitFor('zero-copy sends taken', 5000, () => {
        sent += q.txBurstZeroCopy(idx.subarray(sent), lens.subarray(sent), frames.length - sent)
        const k = q.txReclaim(out)
        for (let i = 0; i < k; i++) {
          reclaimed.push(out[i]!)
          free.push(out[i]!)
        }
        return sent === frames.length
      })
      await waitFor('every buffer back', 5000, () => {
        const k = q.txReclaim(out)
        for (let i = 0; i < k; i++) {
          reclaimed.push(out[i]!)
          free.push(out[i]!)
        }
        return q.txInFlight === 0 && free.length === 32
      })
    }
    await waitFor('all frames at the host', 5000, () => emu.captured().length === rounds * frames.length)
    const got = emu.captured()
    for (let round = 0; round < rounds; round++) {
      frames.forEach((f, i) => {
        t.deepEqual(Buffer.from(got[round * frames.length + i]!), Buffer.from(f), `round ${round}, ${f.length} B frame as written`)
      })
    }
    const count = (xs: number[]) => xs.reduce((m, b) => m.set(b, (m.get(b) ?? 0) + 1), new Map<number, number>())
    t.deepEqual([...count(reclaimed).entries()].sort(), [...count(submitted).entries()].sort(), 'each buffer back as often as it was sent')
    t.is(dev.stats().opackets, rounds * frames.length)
    t.is(emu.stats().totals.guestToHostFrames, rounds * frames.length)
  } finally {
    dispose()
  }
})

test.serial('txBurstZeroCopy refuses held buffers, bad indices and lengths; region views are refused elsewhere', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'capture' })
  try {
    using dev = openSync(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const idx = Uint32Array.of(0)
    const len = Uint32Array.of(1500)
    code(t, () => q.txBurstZeroCopy(idx, len, 1), 'ERR_NETVSC_INVALID_ARG', 'no region yet')
    code(t, () => q.txRegion({ bufSize: 3000 }), 'ERR_NETVSC_INVALID_ARG', 'bufSize not a power of two')
    const region = q.txRegion({ bufSize: 2048, count: 8 })
    code(t, () => q.txRegion({ bufSize: 4096 }), 'ERR_NETVSC_INVALID_ARG', 'another geometry')
    emu.injectFault('withhold-completions')
    for (let b = 0; b < 8; b++) region.set(udpFrame(1500, MAC, b), b * 2048)
    region.set(udpFrame(100, MAC, 1), 2048)
    // Buffer 0 goes GPA-direct (1500 > tx_copybreak 512) and stays in flight; buffer 1 (100 B) is copied.
    const meta = new Uint32Array(2 * META_WORDS)
    encodeTxMeta(meta, 0, { vlanTci: 9 })
    t.is(q.txBurstZeroCopy(Uint32Array.of(0, 1), Uint32Array.of(1500, 100), 2, meta), 2)
    await waitFor('two frames at the host', 5000, () => emu.captured().length === 2)
    const busy = code(t, () => q.txBurstZeroCopy(Uint32Array.of(2, 0), Uint32Array.of(1500, 1500), 2), 'ERR_NETVSC_TX_BUFFER_BUSY', 'in flight')
    t.regex(busy, /descriptor 1: buffer 0 is in flight/)
    t.regex(code(t, () => q.txBurstZeroCopy(Uint32Array.of(1), Uint32Array.of(100), 1), 'ERR_NETVSC_TX_BUFFER_BUSY', 'not reclaimed'), /not reclaimed/)
    t.regex(code(t, () => q.txBurstZeroCopy(Uint32Array.of(3, 3), Uint32Array.of(60, 60), 2), 'ERR_NETVSC_TX_BUFFER_BUSY', 'twice'), /twice/)
    t.regex(code(t, () => q.txBurstZeroCopy(Uint32Array.of(8), Uint32Array.of(60), 1), 'ERR_NETVSC_INVALID_ARG', 'index'), /outside the region's 8 buffers/)
    t.regex(code(t, () => q.txBurstZeroCopy(Uint32Array.of(4), Uint32Array.of(2049), 1), 'ERR_NETVSC_INVALID_ARG', 'too long'), /14\.\.=2048/)
    code(t, () => q.txBurstZeroCopy(Uint32Array.of(4), Uint32Array.of(13), 1), 'ERR_NETVSC_INVALID_ARG', 'too short')
    code(t, () => q.txBurstZeroCopy(Uint32Array.of(4), Uint32Array.of(60), 2), 'ERR_NETVSC_INVALID_ARG', 'n past the arrays')
    // Region views as arguments of the copying bursts and as descriptor arrays.
    const u32InRegion = new Uint32Array(region.buffer, region.byteOffset + 4096, 4)
    t.regex(code(t, () => q.txBurst(region.subarray(0, 1500), Uint32Array.of(1500), new Uint32Array(META_WORDS), 1), 'ERR_NETVSC_INVALID_ARG', 'txBurst buf'), /txRegion\(\)/)
    code(t, () => q.rxBurst(region.subarray(0, 4096), new Uint32Array(4), new Uint32Array(4 * META_WORDS)), 'ERR_NETVSC_INVALID_ARG', 'rxBurst buf')
    code(t, () => q.txBurstZeroCopy(u32InRegion, Uint32Array.of(60), 1), 'ERR_NETVSC_INVALID_ARG', 'bufIdx in the region')
    code(t, () => q.txReclaim(u32InRegion), 'ERR_NETVSC_INVALID_ARG', 'reclaim into the region')
    await new Promise((r) => setTimeout(r, 50))
    t.is(emu.captured().length, 2, 'refused bursts sent nothing')
    const got = emu.captured()
    t.is(got[0]!.length, 1504, 'the VLAN request was inserted by the host')
    t.deepEqual([got[0]![12], got[0]![13], got[0]![15]], [0x81, 0x00, 9])
    t.deepEqual(Buffer.from(got[1]!), Buffer.from(udpFrame(100, MAC, 1)))
    const out = new Uint32Array(8)
    t.is(q.txReclaim(out), 1, 'only the copied buffer is back')
    t.is(out[0], 1)
    t.is(q.txInFlight, 2, 'buffer 0 and the section of the copied frame wait for the host')
  } finally {
    dispose()
  }
})

test('collected region views give their slots back: 300 views made and dropped, none refused', (t) => {
  // Each Queue object maps its own view; the addon lists at most 256 live ones, so a leak fails before the end.
  const script = `
    const { Emulator, openSync, openQueue } = require(${JSON.stringify(path.join(repo, 'src/index.ts'))})
    const emu = new Emulator({ dir: ${JSON.stringify(scratchDir('zcgc'))} })
    const dev = openSync(emu.uuid, { root: emu.dir, timeoutMs: 5000 })
    dev.queue(0).close()
    ;(async () => {
      let made = 0, error = null
      for (let i = 0; i < 300 && error === null; i++) {
        try {
          const q = openQueue(emu.uuid, 0, { root: emu.dir })
          q.txRegion({ bufSize: 2048, count: 4 })[0] = i
          made++
          q.close()
        } catch (e) { error = String(e) }
        // Finalizers run after a collection, from the event loop.
        if (i % 20 === 19) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)) }
      }
      process.stdout.write(JSON.stringify({ made, error }) + '\\n')
      dev.close()
      emu.stop()
    })()
  `
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '-e', script], { cwd: repo, encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL' })
  t.is(r.status, 0, r.stderr)
  t.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}'), { made: 300, error: null })
})

test.serial('startCapture records zero-copy tx frames as the host got them', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'capture' })
  try {
    using dev = openSync(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const region = q.txRegion({ bufSize: 2048, count: 4 })
    const frames = [udpFrame(100, MAC, 3), udpFrame(1500, MAC, 4)]
    frames.forEach((f, i) => region.set(f, (i + 2) * 2048))
    const file = path.join(dir, 'zc.pcap')
    const cap = dev.startCapture(file)
    t.is(q.txBurstZeroCopy(Uint32Array.of(2, 3), Uint32Array.of(100, 1500), 2), 2)
    dev.stopCapture()
    t.is(cap.frames, 2)
    await waitFor('frames at the host', 5000, () => emu.captured().length === 2)
    t.deepEqual(readPcap(file), emu.captured().map((f) => Buffer.from(f)), 'the capture holds what the host got')
    t.deepEqual(readPcap(file), frames.map((f) => Buffer.from(f)))
  } finally {
    dispose()
  }
})
