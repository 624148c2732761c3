/**
 * One guest of `npm run bench -- --vs-dpdk` (benchmark/vs-dpdk.ts), in its own process, pinned by the caller:
 * opens the emulated device under ROOT and runs one workload until it is killed.
 *
 *   node --import tsx benchmark/guest.ts ROOT UUID ts|rust tx|rx SIZE QUEUES [BURST]
 *
 * tx: bursts of BURST copies of a SIZE-byte frame (the TS burst API `txBurst`, or the Rust core `rustTxLoop`);
 * rx: bursts of up to BURST frames (`rxBurst` copying into a typed array, or `rustRxLoop`). With 2 queues one thread
 * serves both in turn, as one DPDK lcore polls several queues. Prints `ready` once the queues are open; the rate is
 * measured by the caller at the host's counters, so nothing here is timed.
 */
import { META_WORDS, openSync } from '../src/index.js'

const [root, uuid, api, dir, sizeArg, queuesArg, burstArg] = process.argv.slice(2)
if (root === undefined || uuid === undefined || sizeArg === undefined || queuesArg === undefined) {
  process.stderr.write('usage: guest.ts ROOT UUID ts|rust tx|rx SIZE QUEUES [BURST]\n')
  process.exit(2)
}
const size = Number(sizeArg)
const nq = Number(queuesArg)
const BURST = Number(burstArg ?? 32)
const dev = openSync(uuid, { root, timeoutMs: 30_000, queues: nq, ...(size > 1514 && { mtu: 9000 }) })
const qs = Array.from({ length: nq }, (_, i) => dev.queue(i))
process.stdout.write('ready\n')

// A frame to the emulator's MAC from a locally administered one, ethertype 0x88b5 (local experimental).
const frame = new Uint8Array(size)
frame.set([0x00, 0x15, 0x5d, 0x00, 0x00, 0x01, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5])

if (dir === 'tx' && api === 'ts') {
  const buf = new Uint8Array(BURST * size)
  for (let i = 0; i < BURST; i++) buf.set(frame, i * size)
  const lens = new Uint32Array(BURST).fill(size)
  const meta = new Uint32Array(BURST * META_WORDS)
  for (;;) for (const q of qs) q.txBurst(buf, lens, meta, BURST)
} else if (dir === 'tx') {
  // Slices of 2 ms per queue (the Rust loop runs a queue for a given time).
  for (;;) for (const q of qs) q.rustTxLoop(frame, BURST, nq > 1 ? 2 : 100)
} else if (api === 'ts') {
  const slot = size <= 1536 ? 1536 : 9216
  const buf = new Uint8Array(BURST * slot)
  const lens = new Uint32Array(BURST)
  const meta = new Uint32Array(BURST * META_WORDS)
  for (;;) for (const q of qs) q.rxBurst(buf, lens, meta)
} else {
  for (;;) for (const q of qs) q.rustRxLoop(BURST, nq > 1 ? 2 : 100)
}
