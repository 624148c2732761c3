/**
 * One guest of `npm run bench -- --latency` (benchmark/latency.ts), in its own process, pinned by the caller: opens
 * the emulated device under ROOT with devargs `latency=LATENCY` and times COUNT round trips of a 64-byte frame
 * through the host's loopback backend, one frame in flight, after WARM unrecorded ones.
 *
 *   node --import tsx benchmark/ping.ts ROOT UUID ts|rust LATENCY COUNT WARM
 *
 * ts: `txBurst` of one frame, then `rxBurst` until it is back, timed with `performance.now()` around both; rust: the
 * same loop in the Rust core (`rustPingPong`). Each frame carries its sequence number (bytes 14..), so a late frame
 * of a timed-out round trip is not taken for the next one. Prints one line `result {json}` with the round-trip
 * percentiles in µs.
 */
import { META_WORDS, openSync } from '../src/index.js'

const [root, uuid, api, latArg, countArg, warmArg] = process.argv.slice(2)
if (root === undefined || uuid === undefined || countArg === undefined) {
  process.stderr.write('usage: ping.ts ROOT UUID ts|rust LATENCY COUNT WARM\n')
  process.exit(2)
}
const count = Number(countArg)
const warm = Number(warmArg ?? 200)
const dev = openSync(uuid, { root, timeoutMs: 30_000, devargs: `latency=${latArg ?? 50}` })
const q = dev.queue(0)
// To the emulator's MAC from a locally administered one, ethertype 0x88b5 (local experimental).
const frame = new Uint8Array(64)
frame.set([0x00, 0x15, 0x5d, 0x00, 0x00, 0x01, 0x02, 0, 0, 0, 0, 2, 0x88, 0xb5])
const TIMEOUT_MS = 1000

let rtts: number[]
if (api === 'rust') {
  rtts = q.rustPingPong(frame, warm + count, TIMEOUT_MS).slice(warm)
} else {
  const lens = Uint32Array.of(64)
  const meta = new Uint32Array(META_WORDS)
  const rbuf = new Uint8Array(32 * 1536)
  const rlens = new Uint32Array(32)
  const rmeta = new Uint32Array(32 * META_WORDS)
  rtts = []
  for (let i = 0; i < warm + count; i++) {
    // The sequence number in bytes 14..18: a late frame of an earlier, timed-out round trip is skipped.
    new DataView(frame.buffer).setUint32(14, i, true)
    const t0 = performance.now()
    const deadline = t0 + TIMEOUT_MS
    let sent = q.txBurst(frame, lens, meta, 1) === 1
    while (!sent && performance.now() < deadline) sent = q.txBurst(frame, lens, meta, 1) === 1
    let back = false
    while (sent && !back) {
      const n = q.rxBurst(rbuf, rlens, rmeta)
      let off = 0
      for (let k = 0; k < n; k++) {
        if (rbuf[off + 14] === frame[14] && rbuf[off + 15] === frame[15] && rbuf[off + 16] === frame[16] && rbuf[off + 17] === frame[17]) back = true
        off += rlens[k]!
      }
      if (!back && performance.now() >= deadline) break
    }
    const rtt = back ? (performance.now() - t0) * 1e6 : -1
    if (i >= warm) rtts.push(rtt)
  }
}

const ok = Float64Array.from(rtts.filter((x) => x >= 0)).sort()
const pct = (p: number) => (ok.length === 0 ? NaN : ok[Math.min(ok.length - 1, Math.floor((p / 100) * ok.length))]! / 1000)
const mean = ok.reduce((a, b) => a + b, 0) / Math.max(1, ok.length) / 1000
process.stdout.write(`result ${JSON.stringify({ n: ok.length, lost: rtts.length - ok.length, minUs: pct(0), p50Us: pct(50), p99Us: pct(99), p999Us: pct(99.9), maxUs: ok.length > 0 ? ok[ok.length - 1]! / 1000 : NaN, meanUs: mean })}\n`)
dev.close()
