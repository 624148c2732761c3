/**
 * One guest of `npm run bench -- --vs-dpdk` / `--zero-copy` / `--scaling` (benchmark/vs-dpdk.ts, zero-copy.ts,
 * scaling.ts), in its own process, pinned by the caller: opens the emulated device under ROOT and runs one workload
 * until it is killed.
 *
 *   node --import tsx benchmark/guest.ts ROOT UUID API tx|rx SIZE QUEUES [BURST]
 *
 * API: ts | rust | ts-zc | rust-zc | ts-zcN | rust-zcN, optionally with `-mt`.
 * tx: bursts of BURST copies of a SIZE-byte frame (the TS burst API `txBurst`, or the Rust core `rustTxLoop`; with
 * `-zc` the zero-copy path: the frame in every buffer of the queue's tx region, sent by index with
 * `txBurstZeroCopy` / `rustTxZeroCopyLoop` and resubmitted as `txReclaim` returns the buffers; `ts-zc32`: a region
 * of 32 buffers, as deep as the copying path's 32 GPA-direct slots);
 * rx: bursts of up to BURST frames (`rxBurst` copying into a typed array, or `rustRxLoop`). Without `-mt`, one thread
 * serves all queues in turn, as one DPDK lcore polls several queues; with `-mt` each queue has its own worker_threads
 * worker (`openQueue` in the worker). Prints `ready` once the queues are open; the rate is measured by the caller at
 * the host's counters, so nothing here is timed.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { META_WORDS, type Queue, openQueue, openSync } from '../src/index.js'

interface Job {
  root: string
  uuid: string
  api: string
  dir: string
  size: number
  burst: number
}

/**
 * Tx region geometry for zero-copy frames of `size` bytes: 2 KiB × 1024 up to 2048 B, else 16 KiB × 256; an api
 * name ending in a number (`ts-zc32`) sets the count (32 = the copying path's GPA-direct slots per queue).
 */
function zeroCopyGeometry(size: number, api: string): { bufSize: number; count: number } {
  const n = /(\d+)$/.exec(api)
  const geo = size <= 2048 ? { bufSize: 2048, count: 1024 } : { bufSize: 16384, count: 256 }
  return n === null ? geo : { ...geo, count: Number(n[1]) }
}

/** The workload on `qs`, forever. */
function run(qs: Queue[], job: Job): never {
  const { api, dir, size, burst: BURST } = job
  const nq = qs.length
  // A frame to the emulator's MAC from a locally administered one, ethertype 0x88b5 (local experimental).
  const frame = new Uint8Array(size)
  frame.set([0x00, 0x15, 0x5d, 0x00, 0x00, 0x01, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5])
  if (dir === 'tx' && api.startsWith('ts-zc')) {
    // Zero-copy: the frame written once into every buffer of each queue's tx region; buffers go out by index and
    // are resubmitted as txReclaim hands them back.
    const geo = zeroCopyGeometry(size, api)
    const lanes = qs.map((q) => {
      const region = q.txRegion(geo)
      for (let b = 0; b < geo.count; b++) region.set(frame, b * geo.bufSize)
      const free = Uint32Array.from({ length: geo.count }, (_, i) => i)
      return { q, free, top: geo.count, idx: new Uint32Array(BURST), k: 0 }
    })
    const lens = new Uint32Array(BURST).fill(size)
    const back = new Uint32Array(BURST * 2)
    for (;;) {
      for (const l of lanes) {
        while (l.k < BURST && l.top > 0) l.idx[l.k++] = l.free[--l.top]!
        const took = l.q.txBurstZeroCopy(l.idx, lens, l.k)
        l.idx.copyWithin(0, took, l.k)
        l.k -= took
        const r = l.q.txReclaim(back)
        for (let i = 0; i < r; i++) l.free[l.top++] = back[i]!
      }
    }
  } else if (dir === 'tx' && api.startsWith('rust-zc')) {
    const geo = zeroCopyGeometry(size, api)
    for (;;) for (const q of qs) q.rustTxZeroCopyLoop(frame, BURST, nq > 1 ? 2 : 100, geo)
  } else if (dir === 'tx' && api === 'ts') {
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
}

if (!isMainThread) {
  // A worker of an `-mt` guest: its own queue, the same loop.
  const { job, index } = workerData as { job: Job; index: number }
  const q = openQueue(job.uuid, index, { root: job.root })
  parentPort?.postMessage('ready')
  run([q], job)
}

const [root, uuid, apiArg, dir, sizeArg, queuesArg, burstArg] = process.argv.slice(2)
if (root === undefined || uuid === undefined || apiArg === undefined || dir === undefined || sizeArg === undefined || queuesArg === undefined) {
  process.stderr.write('usage: guest.ts ROOT UUID ts|rust|ts-zc[N]|rust-zc[N][-mt] tx|rx SIZE QUEUES [BURST]\n')
  process.exit(2)
}
const size = Number(sizeArg)
const nq = Number(queuesArg)
const threaded = apiArg.endsWith('-mt')
const job: Job = { root, uuid, api: apiArg.replace(/-mt$/, ''), dir, size, burst: Number(burstArg ?? 32) }
const dev = openSync(uuid, { root, timeoutMs: 30_000, queues: nq, ...(size > 1514 && { mtu: 9000 }) })
if (threaded) {
  // One worker per queue; the main thread keeps the device (its event thread) and only waits.
  const workers = Array.from({ length: dev.queueCount }, (_, index) =>
    new Worker(`require('tsx/cjs'); require(${JSON.stringify(__filename)})`, { eval: true, workerData: { job, index } }))
  void Promise.all(workers.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve)
    w.once('error', reject)
  }))).then(() => process.stdout.write(`workers ${workers.length}\nready\n`), (err: unknown) => {
    process.stderr.write(`worker failed: ${String(err)}\n`)
    process.exit(1)
  })
} else {
  const qs = Array.from({ length: nq }, (_, i) => dev.queue(i))
  process.stdout.write('ready\n')
  run(qs, job)
}
