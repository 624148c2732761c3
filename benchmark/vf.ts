/**
 * The VF rows of `npm run bench` (root): Mpps at 64 and 1500 B, tx and rx, through the TS burst API on one queue,
 * on the synthetic path and with the data path switched to the VF (AF_XDP, then AF_PACKET) over the emulator's
 * veth. Same emulator and workload in each mode; the host counts what it got, so "host got" shows the VF frames
 * really crossed the veth. Re-runs itself under `unshare --net`, so the veth lives in a private namespace.
 * NETVSC_BENCH_MS sets the time per point (default 1000).
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Emulator, META_WORDS, open } from '../src/index.js'

const MS = Number(process.env.NETVSC_BENCH_MS ?? 1000)
const BURST = 32
type Mode = 'synthetic' | 'af_xdp' | 'af_packet'

async function rig(backend: 'sink' | 'generator', size: number, mode: Mode) {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  const dir = fs.mkdtempSync(path.join(base, 'netvsc-benchvf-'))
  const emu = new Emulator({
    dir,
    backend,
    maxQueues: 1,
    busyPoll: true,
    vf: { iface: 'nvbench0', delayMs: 0 },
    ...(backend === 'generator' && { generator: { ratePps: 0, frameSizes: [size] } }),
  })
  const dev = await open(emu.uuid, {
    root: dir,
    timeoutMs: 10_000,
    vf: mode === 'synthetic' ? { enabled: false } : { prefer: mode, retryMs: 50, retries: 200 },
  })
  const until = Date.now() + 15_000
  while (mode !== 'synthetic' && !dev.vfInfo()?.switched) {
    if (Date.now() > until) throw new Error(`the VF never switched (${JSON.stringify(dev.vfInfo())})`)
    dev.queue(0).pollCompletions()
    await new Promise((r) => setTimeout(r, 5))
  }
  const got = dev.vfInfo()
  if (mode !== 'synthetic' && got?.mode !== mode) throw new Error(`asked for ${mode}, the VF opened as ${got?.mode}`)
  const q = dev.queue(0)
  const done = () => {
    dev.close()
    emu.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { emu, dev, q, done, zeroCopy: got?.zeroCopy ?? false }
}

function hostGot(emu: Emulator, dir: 'tx' | 'rx'): number {
  const s = emu.stats()
  const vf = emu.vfState()
  return dir === 'tx'
    ? s.totals.guestToHostFrames + (vf?.vfGuestToHostFrames ?? 0)
    : s.totals.hostToGuestFrames + (vf?.vfHostToGuestFrames ?? 0)
}

async function tx(size: number, mode: Mode) {
  const r = await rig('sink', size, mode)
  try {
    const buf = new Uint8Array(BURST * size)
    for (let i = 0; i < BURST; i++) buf.set([0, 0x15, 0x5d, 0, 0, 0x99, 0, 0x15, 0x5d, 0, 0, 1, 0x88, 0xb5], i * size)
    const lens = new Uint32Array(BURST).fill(size)
    const meta = new Uint32Array(BURST * META_WORDS)
    const before = hostGot(r.emu, 'tx')
    let sent = 0
    const t0 = performance.now()
    const stop = t0 + MS
    while (performance.now() < stop) sent += r.q.txBurst(buf, lens, meta, BURST)
    const secs = (performance.now() - t0) / 1000
    const drain = Date.now() + 2000
    while (r.q.txInFlight > 0 && Date.now() < drain) r.q.pollCompletions()
    await new Promise((res) => setTimeout(res, 200))
    return { mpps: sent / secs / 1e6, host: hostGot(r.emu, 'tx') - before, sent, zc: r.zeroCopy }
  } finally {
    r.done()
  }
}

async function rx(size: number, mode: Mode) {
  const r = await rig('generator', size, mode)
  try {
    const buf = new Uint8Array(BURST * 1536)
    const lens = new Uint32Array(BURST)
    const meta = new Uint32Array(BURST * META_WORDS)
    let got = 0
    const t0 = performance.now()
    const stop = t0 + MS
    while (performance.now() < stop) got += r.q.rxBurst(buf, lens, meta)
    const secs = (performance.now() - t0) / 1000
    const x = r.dev.xstats()
    return { mpps: got / secs / 1e6, host: hostGot(r.emu, 'rx'), sent: got, viaVf: x.vf_rx_good_packets ?? 0, zc: r.zeroCopy }
  } finally {
    r.done()
  }
}

async function main(): Promise<void> {
  const rows: Array<Record<string, string>> = []
  for (const mode of ['synthetic', 'af_xdp', 'af_packet'] as const) {
    for (const size of [64, 1500]) {
      const t = await tx(size, mode)
      const r = await rx(size, mode)
      const name = mode === 'synthetic' ? 'synthetic' : `VF ${mode}${t.zc ? ' zero-copy' : mode === 'af_xdp' ? ' (copy)' : ''}`
      rows.push({
        path: name,
        'frame B': String(size),
        'tx Mpps': t.mpps.toFixed(3),
        'tx host got': String(t.host),
        'rx Mpps': r.mpps.toFixed(3),
        'rx via VF': mode === 'synthetic' ? '-' : String(r.viaVf),
      })
    }
  }
  console.log(`VF rows: burst ${BURST}, ${MS} ms per point, TS burst API, one queue, emulator in-process (busy-poll), veth in a private netns`)
  console.table(rows)
}

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root (the VF is a veth pair)'
  if (spawnSync('unshare', ['--net', 'true']).status !== 0) return '`unshare --net` does not work here'
  return null
}

if (process.env.NETVSC_BENCH_IN_NETNS === '1') {
  main().catch((err) => {
    console.error(`bench vf: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  })
} else {
  const why = skipReason()
  if (why !== null) console.log(`VF rows: SKIP: ${why}`)
  else {
    const r = spawnSync('unshare', ['--net', process.execPath, '--import', 'tsx', __filename], {
      stdio: 'inherit',
      env: { ...process.env, NETVSC_BENCH_IN_NETNS: '1' },
    })
    if (r.status !== 0) process.exitCode = r.status ?? 1
  }
}
