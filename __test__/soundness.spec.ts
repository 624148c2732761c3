/**
 * The addon refuses burst arguments that would alias: typed arrays viewing the same bytes (they become `&mut`
 * slices), and arrays viewing `recvRegion()` (memory the host and driver write). Each refusal is
 * ERR_NETVSC_INVALID_ARG, consumes nothing, and the queue keeps working with separate arrays.
 */
import test from 'ava'
import { DESC_WORDS, META_WORDS, NetvscError, openSync } from '../src/index.js'
import { MAC, emulator, udpFrame, waitFor } from './helpers.js'

type Rx = (buf: Uint8Array, lens: Uint32Array, meta: Uint32Array) => number

function refused(t: import('ava').ExecutionContext, f: () => unknown, what: string): void {
  const e = t.throws(f, { instanceOf: NetvscError }, what)
  t.is(e?.code, 'ERR_NETVSC_INVALID_ARG', what)
}

test.serial('rxBurst / rxBurstZeroCopy / txBurst refuse overlapping arrays and views of recvRegion()', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = openSync(emu.uuid, { root: dir, timeoutMs: 5000, devargs: { rx_extmbuf_enable: 1, rx_copybreak: 128 } })
    const q = dev.queue(0)
    const frame = udpFrame(300, MAC, 7)
    // One ArrayBuffer, three views: buf [0, 4096), lens [4096, 4224), meta [4224, 4736) when disjoint.
    const ab = new ArrayBuffer(8192)
    const buf = new Uint8Array(ab, 0, 4096)
    const lens = new Uint32Array(ab, 4096, 32)
    const meta = new Uint32Array(ab, 4224, 32 * META_WORDS)
    // Overlapping variants of each.
    const lensInBuf = new Uint32Array(ab, 1024, 32)
    const metaInBuf = new Uint32Array(ab, 2048, 32 * META_WORDS)
    const metaOverLens = new Uint32Array(ab, 4096 + 64, 32 * META_WORDS)

    // Send one frame so a (wrongly accepted) rx call would have something to consume.
    const tl = Uint32Array.of(frame.length)
    const tm = new Uint32Array(META_WORDS)
    t.is(q.txBurst(frame, tl, tm, 1), 1)
    const rx: Rx = (b, l, m) => q.rxBurst(b, l, m)
    refused(t, () => rx(buf, lensInBuf, meta), 'rxBurst: lens inside buf')
    refused(t, () => rx(buf, lens, metaInBuf), 'rxBurst: meta inside buf')
    refused(t, () => rx(buf, lens, metaOverLens), 'rxBurst: meta over lens')
    refused(t, () => rx(buf, lens, lens as unknown as Uint32Array), 'rxBurst: one array twice')

    const descs = new Uint32Array(ab, 4096, 32 * DESC_WORDS)
    const zmeta = new Uint32Array(ab, 4096 + 32 * DESC_WORDS * 4, 32 * META_WORDS)
    const zbuf = new Uint8Array(ab, 0, 2048)
    refused(t, () => q.rxBurstZeroCopy(new Uint32Array(ab, 4096 + 16, 32 * DESC_WORDS), zmeta, zbuf), 'zero-copy: descs over meta')
    refused(t, () => q.rxBurstZeroCopy(new Uint32Array(ab, 1024, 32 * DESC_WORDS), zmeta, zbuf), 'zero-copy: descs inside buf')
    refused(t, () => q.rxBurstZeroCopy(descs, new Uint32Array(ab, 512, 32 * META_WORDS), zbuf), 'zero-copy: meta inside buf')

    refused(t, () => q.txBurst(new Uint8Array(ab, 0, 4096), new Uint32Array(ab, 0, 1), tm, 1), 'txBurst: lens inside buf')
    refused(t, () => q.txBurst(new Uint8Array(ab, 0, 4096), tl, new Uint32Array(ab, 64, META_WORDS), 1), 'txBurst: meta inside buf')
    refused(t, () => q.txBurst(frame, new Uint32Array(ab, 0, 8), new Uint32Array(ab, 16, META_WORDS), 1), 'txBurst: meta over lens')

    // Views of the receive region: the whole region and a slice of it, as each argument.
    const region = q.recvRegion()
    const inRegion = region.subarray(4096, 8192)
    const u32InRegion = new Uint32Array(region.buffer, region.byteOffset + 8192, 256)
    refused(t, () => rx(region, lens, meta), 'rxBurst: buf is recvRegion()')
    refused(t, () => rx(inRegion, lens, meta), 'rxBurst: buf views recvRegion()')
    refused(t, () => rx(buf, u32InRegion, meta), 'rxBurst: lens views recvRegion()')
    refused(t, () => q.rxBurstZeroCopy(descs, zmeta, inRegion), 'zero-copy: buf views recvRegion()')
    refused(t, () => q.rxBurstZeroCopy(u32InRegion, zmeta, zbuf), 'zero-copy: descs view recvRegion()')
    refused(t, () => q.txBurst(inRegion, tl, tm, 1), 'txBurst: buf views recvRegion()')

    // Nothing was consumed by a refused call: the frame arrives whole through disjoint views of the same buffer.
    let got = 0
    await waitFor('the frame', 5000, () => {
      q.pollCompletions()
      got = q.rxBurst(buf, lens, meta)
      return got > 0
    })
    t.is(got, 1)
    t.is(lens[0], frame.length)
    t.deepEqual(Buffer.from(buf.subarray(0, frame.length)), Buffer.from(frame))
    t.is(emu.stats().totals.guestToHostFrames, 1, 'the host saw the one frame txBurst took; refused txBursts sent nothing')
  } finally {
    dispose()
  }
})
