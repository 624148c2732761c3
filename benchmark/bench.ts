/**
 * `npm run bench`: tx and rx Mpps at 64 and 1500 bytes through the TypeScript burst API, next to the same workload
 * run by the Rust core on the same queue in the same process (`rustTxLoop`/`rustRxLoop`), and their ratio. The
 * emulator runs in-process: tx into a sink, rx from an unlimited generator, host threads busy-polling.
 * NETVSC_BENCH_MS sets the time per point (default 1000). `npm run bench -- --vs-dpdk [--quick]`: DPDK's PMD, the Rust
 * core and the TS API, each a guest in its own process against a host in another (benchmark/vs-dpdk.ts).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Emulator, META_WORDS, open } from '../src/index.js'
import { runVsDpdk } from './vs-dpdk.js'

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
    ...(backend === 'generator' && { generator: { ratePps: 0, frameSizes: [size] } }),
  })
  const dev = await open(emu.uuid, { root: dir, timeoutMs: 10_000 })
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
}

if (process.argv.includes('--vs-dpdk')) {
  runVsDpdk(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
} else {
  inProcess().catch((err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
