/**
 * A stalled application loses nothing the host could buffer: while JS does not poll for 300 ms, the addon's event
 * thread sets rx transfers aside (uncompleted) for the queue and still delivers link events; afterwards every
 * generated frame arrives in order (sequence numbers from the sequenced generator).
 */
import test from 'ava'
import { META_WORDS, type LinkEvent, openSync } from '../src/index.js'
import { emulator, waitFor } from './helpers.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test.serial('a 300 ms stall loses no frame and link events arrive during it', async (t) => {
  const probe = emulator()
  let sections: number
  try {
    const d = openSync(probe.emu.uuid, { root: probe.dir, timeoutMs: 5000 })
    sections = d.info().recvSections
    d.close()
  } finally {
    probe.dispose()
  }
  // As much as the receive buffer holds, less a margin for the host's own control messages.
  const limit = Math.floor((sections * 9) / 10)
  const size = 64
  const { emu, dir, dispose } = emulator({
    backend: 'generator',
    generator: { ratePps: 0, frameSizes: [size], limit, sequenced: true },
  })
  try {
    using dev = openSync(emu.uuid, { root: dir, timeoutMs: 5000 })
    const q = dev.queue(0)
    const seen: number[] = []
    dev.on('link', (e: LinkEvent) => {
      if (e.reason === 'speed') seen.push(Date.now())
    })
    const t0 = Date.now()
    await sleep(100)
    emu.setLinkSpeed(4200)
    await sleep(200)
    const stallEnd = Date.now()
    t.true(seen.length > 0 && seen[0]! <= stallEnd, 'the speed event was delivered during the stall')
    const burst = 32
    const buf = new Uint8Array(burst * 128)
    const lens = new Uint32Array(burst)
    const meta = new Uint32Array(burst * META_WORDS)
    let next = 0
    let bad = 0
    await waitFor('every frame', 20_000, () => {
      const n = q.rxBurst(buf, lens, meta)
      let off = 0
      for (let i = 0; i < n; i++) {
        const f = buf.subarray(off, off + lens[i]!)
        off += lens[i]!
        // Flow 0 is TCP: the sequence number is the first 8 payload bytes (14 + 20 + 20).
        const seq = Number(new DataView(f.buffer, f.byteOffset + 54, 8).getBigUint64(0, true))
        if (f.length !== size || seq !== next) bad++
        next++
      }
      return next >= limit
    })
    t.is(bad, 0, 'every frame in order, of its size')
    t.is(next, limit)
    const s = dev.stats()
    t.is(s.imissed, 0, 'the driver dropped nothing')
    t.is(emu.stats().totals.hostToGuestFrames, limit, 'the host delivered everything it generated')
    t.log(`${limit} frames after a ${stallEnd - t0} ms stall, speed event ${seen[0]! - t0} ms in`)
  } finally {
    dispose()
  }
})
