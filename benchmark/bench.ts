/**
 * `npm run bench`: tx and rx Mpps at 64 and 1500 bytes through the TypeScript burst API, next to the same workload
 * run by the Rust core on the same queue in the same process (`rustTxLoop`/`rustRxLoop`), and their ratio. The
 * emulator runs in-process: tx into a sink, rx from an unlimited generator, host threads busy-polling.
 * Then zero-copy tx (`txBurstZeroCopy`) against copying at 1500 and 9000 B. NETVSC_BENCH_MS sets the time per point
 * (default 1000). Modes, each guest in its own process against a host in another: `--vs-dpdk [--quick]` (DPDK's PMD,
 * the Rust core and the TS API; benchmark/vs-dpdk.ts), `--zero-copy [--quick]` (benchmark/zero-copy.ts) and
 * `--latency [--quick]` (ping-pong round trips; benchmark/latency.ts) and `--scaling [--quick]` (1 queue vs 2 queues
 * on 2 worker_threads; benchmark/scaling.ts).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Emulator, META_WORDS, open } from '../src/index.js'
import { runLatency } from './latency.js'
import { runScaling } from './scaling.js'
import { runVsDpdk } from './vs-dpdk.js'
import { runZeroCopy } from './zero-copy.js'

const MS = Number(process.env.NETVSC_BENCH_MS ?? 1000)
const BURST = 32

async function rig(backend: 'sink' | 'generator', size: number) {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  const dir = fs.mkdtempSync(path.join(base, 'netvsc-bench-'))
  const emu = new Emulator({
    dir,
    backend,
    maxQueues: 1,
    busyPoll: true,
    ...(size > 1514 && { mtu: 9000 }),
    ...(backend === 'generator' && { generator: { ratePps: 0, frameSizes: [size] } }),
  })
  const dev = await open(emu.uuid, { root: dir, timeoutMs: 10_000, ...(size > 1514 && { mtu: 9000 }) })
  const q = dev.queue(0)
  const done = () => {
    dev.close()
    emu.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { emu, dev, q, done }
}

async function tsTx(size: number): Promise<{ ts: number; rust: number }> {
  const { dev, q, done } = await rig('sink', size)
  try {
    const buf = new Uint8Array(BURST * size)
    for (let i = 0; i < BURST; i++) buf.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5], i * size)
    const lens = new Uint32Array(BURST).fill(size)
    const meta = new Uint32Array(BURST * META_WORDS)
    let sent = 0
    const t0 = performance.now()
    const until = t0 + MS
    while (performance.now() < until) sent += q.txBurst(buf, lens, meta, BURST)
    const ts = sent / ((performance.now() - t0) / 1000)
    const t1 = performance.now()
    const rsent = q.rustTxLoop(buf.subarray(0, size), BURST, MS)
    const rust = rsent / ((performance.now() - t1) / 1000)
    while (q.txInFlight > 0) q.pollCompletions()
    return { ts, rust }
  } finally {
    void dev
    done()
  }
}

/** Zero-copy tx (`txBurstZeroCopy` from the tx region) next to the copying `txBurst`, and the same in the Rust core. */
async function zcTx(size: number): Promise<{ ts: number; tsZc: number; rust: number; rustZc: number }> {
  const { q, done } = await rig('sink', size)
  try {
    const frame = new Uint8Array(size)
    frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5])
    const rate = (n: number, t0: number) => n / ((performance.now() - t0) / 1000)
    const buf = new Uint8Array(BURST * size)
    for (let i = 0; i < BURST; i++) buf.set(frame, i * size)
    const lens = new Uint32Array(BURST).fill(size)
    const meta = new Uint32Array(BURST * META_WORDS)
    let sent = 0
    let t0 = performance.now()
    while (performance.now() < t0 + MS) sent += q.txBurst(buf, lens, meta, BURST)
    const ts = rate(sent, t0)
    while (q.txInFlight > 0) q.pollCompletions()
    const geo = size <= 2048 ? { bufSize: 2048, count: 1024 } : { bufSize: 16384, count: 256 }
    const region = q.txRegion(geo)
    for (let b = 0; b < geo.count; b++) region.set(frame, b * geo.bufSize)
    const free = Uint32Array.from({ length: geo.count }, (_, i) => i)
    let top = geo.count
    const idx = new Uint32Array(BURST)
    const back = new Uint32Array(2 * BURST)
    let k = 0
    sent = 0
    t0 = performance.now()
    while (performance.now() < t0 + MS) {
      while (k < BURST && top > 0) idx[k++] = free[--top]!
      const took = q.txBurstZeroCopy(idx, lens, k)
      idx.copyWithin(0, took, k)
      k -= took
      sent += took
      const r = q.txReclaim(back)
      for (let i = 0; i < r; i++) free[top++] = back[i]!
    }
    const tsZc = rate(sent, t0)
    while (q.txInFlight > 0) q.pollCompletions()
    t0 = performance.now()
    const rust = rate(q.rustTxLoop(frame, BURST, MS), t0)
    while (q.txInFlight > 0) q.pollCompletions()
    t0 = performance.now()
    const rustZc = rate(q.rustTxZeroCopyLoop(frame, BURST, MS, geo), t0)
    while (q.txInFlight > 0) q.pollCompletions()
    return { ts, tsZc, rust, rustZc }
  } finally {
    done()
  }
}

async function tsRx(size: number): Promise<{ ts: number; rust: number }> {
  const { q, done } = await rig('generator', size)
  try {
    const buf = new Uint8Array(BURST * 1536)
    const lens = new Uint32Array(BURST)
    const meta = new Uint32Array(BURST * META_WORDS)
    let got = 0
    const t0 = performance.now()
    const until = t0 + MS
    while (performance.now() < until) got += q.rxBurst(buf, lens, meta)
    const ts = got / ((performance.now() - t0) / 1000)
    const t1 = performance.now()
    const rgot = q.rustRxLoop(BURST, MS)
    const rust = rgot / ((performance.now() - t1) / 1000)
    return { ts, rust }
  } finally {
    done()
  }
}

async function inProcess(): Promise<void> {
  const rows: Array<Record<string, string>> = []
  for (const [dir, fn] of [['tx', tsTx], ['rx', tsRx]] as const) {
    for (const size of [64, 1500]) {
      const { ts, rust } = await fn(size)
      rows.push({
        direction: dir,
        'frame B': String(size),
        'TS burst API Mpps': (ts / 1e6).toFixed(3),
        'Rust core Mpps': (rust / 1e6).toFixed(3),
        'TS/Rust': rust > 0 ? (ts / rust).toFixed(2) : '-',
      })
    }
  }
  console.log(`burst ${BURST}, ${MS} ms per point, ${os.cpus().length} CPUs, node ${process.version}`)
  console.table(rows)
  const zc: Array<Record<string, string>> = []
  for (const size of [1500, 9000]) {
    const r = await zcTx(size)
    const m = (x: number) => (x / 1e6).toFixed(3)
    const x = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '-')
    zc.push({ 'frame B': String(size), 'TS copy Mpps': m(r.ts), 'TS zero-copy Mpps': m(r.tsZc), 'TS zc/copy': x(r.tsZc, r.ts),
      'Rust copy Mpps': m(r.rust), 'Rust zero-copy Mpps': m(r.rustZc), 'Rust zc/copy': x(r.rustZc, r.rust) })
  }
  console.log('zero-copy tx (tx region, GPA-direct from the buffers) vs copying, in-process host; cross-process: --zero-copy')
  console.table(zc)
}

const mode = [['--vs-dpdk', runVsDpdk], ['--zero-copy', runZeroCopy], ['--latency', runLatency], ['--scaling', runScaling]] as const
const picked = mode.find(([flag]) => process.argv.includes(flag))
if (picked !== undefined) {
  picked[1](process.argv.slice(2)).catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
} else {
  inProcess().catch((err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
