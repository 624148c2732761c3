/**
 * `npm run bench -- --vs-dpdk [--quick] [options]`: DPDK 22.11 testpmd (txonly / rxonly) vs the Rust core
 * (`rustTxLoop` / `rustRxLoop`) vs the TS burst API, every one a guest in its own process against one emulated host
 * in another (`netvsc emulate --busy-poll`, backend sink for tx, an unlimited generator for rx), host pinned to
 * `--host-cpu`, guest to `--guest-cpu`. Rates are read at the host's counters over a window after warm-up, so all
 * three guests are measured the same way; the host's busy fraction (time its threads spent in turns that moved
 * packets) shows who the bottleneck is. Also the ring (vmbus-ring bench: GB/s vs memcpy) in the same run.
 *
 * Results: benchmark/results/vs-dpdk.{json,md,svg} (`--out DIR` elsewhere). Options:
 *   --quick            64 and 1500 B, 1 queue, one start per point with 3 windows (< 2 min)
 *   --sizes 64,512     frame sizes (default 64,512,1500,9000)
 *   --queues 1,2       queue counts (default 1,2)
 *   --drivers dpdk,rust,ts
 *   --runs N           fresh host+guest starts per point (default 1)
 *   --windows N        measurement windows per start (default 3): samples per point = runs x windows
 *   --ms N             window length (default 1000; quick 400)
 *   --host-cpu C --guest-cpu C   (default 0 and 1)
 *   --render F.json    only re-write F.md and F.svg from a results JSON
 * DPDK needs root (mount namespace + LD_PRELOAD interposer) and dpdk-testpmd; otherwise its rows say why they are
 * missing.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { request } from '../src/cli/ctl.js'

type Api = 'dpdk' | 'rust' | 'ts'
/** What benchmark/guest.ts runs: the APIs above, or the zero-copy tx ones (`txBurstZeroCopy`, `rustTxZeroCopyLoop`). */
export type GuestApi = Api | `rust-zc${string}` | `ts-zc${string}`
export type Dir = 'tx' | 'rx'
export interface Sample {
  mpps: number
  gbps: number
  hostBusy: number
  hostBusyThreads: number[]
  /** rx: frames the host dropped for want of a guest buffer or ring space, per frame offered (> 0: the host
   * outran the guest). */
  hostDropFrac: number
  load1: number
  /** Mpps of each channel (queue) in the window, at the host's per-channel counters. */
  channelMpps?: number[]
}
interface Point {
  api: Api
  dir: Dir
  size: number
  queues: number
  samples: Sample[]
  note?: string
}

const REPO = path.resolve(__dirname, '..')
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export function opt(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const list = (s: string | undefined, d: number[]) => (s === undefined ? d : s.split(',').map(Number))

export function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

export function dpdkSkip(): string | null {
  if (process.getuid?.() !== 0) return 'not root (DPDK runs in a mount namespace with the uio interposer)'
  if (!which('dpdk-testpmd')) return 'dpdk-testpmd is not installed (Debian package dpdk)'
  if (!which('taskset')) return 'taskset is not installed'
  return null
}

interface Stats {
  totals: {
    guestToHostFrames: number
    guestToHostBytes: number
    hostToGuestFrames: number
    hostToGuestBytes: number
    drops: { noRxBuffer: number; ringFull: number }
  }
  channels: Array<{ workerBusyNs?: number; guestToHostFrames?: number; hostToGuestFrames?: number }>
  rxBusyNs?: number
}

async function stats(dir: string): Promise<{ at: number; s: Stats }> {
  const line = await request(path.join(dir, 'ctl.sock'), { cmd: 'stats', args: [] })
  const at = performance.now()
  const r = JSON.parse(line) as { ok: boolean; stats?: Stats; error?: string } & Partial<Stats>
  const s = r.stats ?? (r as unknown as Stats)
  if (s.totals === undefined) throw new Error(`unexpected stats reply: ${line.slice(0, 200)}`)
  return { at, s }
}

/** Lines a child printed, for waiting on a marker. */
export function collect(child: ChildProcess): { text: () => string; wait: (re: RegExp, ms: number) => Promise<boolean> } {
  let buf = ''
  child.stdout?.on('data', (d: Buffer) => (buf += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (buf += d.toString()))
  return {
    text: () => buf,
    wait: async (re, ms) => {
      const end = performance.now() + ms
      while (performance.now() < end) {
        if (re.test(buf)) return true
        if (child.exitCode !== null) return false
        await sleep(20)
      }
      return false
    },
  }
}

export async function stop(child: ChildProcess, how: NodeJS.Signals, ms = 10_000): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return
  try {
    process.kill(-child.pid, how)
  } catch {
    return
  }
  const end = performance.now() + ms
  while (child.exitCode === null && child.signalCode === null && performance.now() < end) await sleep(20)
  if (child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      /* gone */
    }
  }
}

export interface Cfg {
  ms: number
  windows: number
  hostCpu: number
  guestCpu: number
  /** CPU list for a netvsc guest process instead of `guestCpu` (e.g. `1,2` for a guest with two worker threads). */
  guestCpus?: string
}

/** One start of host + guest; returns `cfg.windows` samples (or throws with the transcript). */
export async function runOnce(cfg: Cfg, api: GuestApi, dir: Dir, size: number, queues: number): Promise<Sample[]> {
  const tree = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'nvb-'))
  const uuid = randomUUID()
  const backend = dir === 'tx' ? ['--backend', 'sink'] : ['--backend', 'generator', '--gen-rate', '0', '--gen-size', String(size), '--gen-flows', '64']
  const emuArgs = ['node', '--import', 'tsx', path.join(REPO, 'src/cli.ts'), 'emulate', '--dir', tree, '--uuid', uuid,
    '--busy-poll', '--max-queues', String(queues), ...backend]
  let guest: ChildProcess | null = null
  let host: ChildProcess
  if (api === 'dpdk') {
    const prefix = `nvb${process.pid}${Math.floor(Math.random() * 1e6)}`
    // Frames above 1514 B need bigger mbufs; 22.11 net/netvsc refuses --max-pkt-len 9018 ("Fail to configure port 0").
    const big = size > 1514
    const testpmd = ['taskset', '-c', `${cfg.hostCpu},${cfg.guestCpu}`, 'dpdk-testpmd', '--no-huge', '-m', '1024', '--no-pci',
      '-l', `${cfg.hostCpu},${cfg.guestCpu}`, '--main-lcore', String(cfg.hostCpu), '--file-prefix', prefix, '--log-level', 'lib.eal:error', '--',
      `--forward-mode=${dir === 'tx' ? 'txonly' : 'rxonly'}`, '--burst=32', `--rxq=${queues}`, `--txq=${queues}`, '--nb-cores=1',
      '--total-num-mbufs=16384', ...(big ? ['--mbuf-size=10240'] : []), ...(dir === 'tx' ? [`--txpkts=${size}`] : [])]
    host = spawn('taskset', ['-c', String(cfg.hostCpu), ...emuArgs, '--run', '--', ...testpmd], {
      // No HV_EMU_DPDK_QUEUE_STATE_FIX: the interposer applies the 22.11 queue-state workaround from rte_version().
      cwd: REPO, detached: true, stdio: ['pipe', 'pipe', 'pipe'],
    })
  } else {
    host = spawn('taskset', ['-c', String(cfg.hostCpu), ...emuArgs], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  }
  const hostOut = collect(host)
  let guestOut: ReturnType<typeof collect> | null = null
  try {
    if (!(await hostOut.wait(/^emulating /m, 60_000))) throw new Error(`emulator did not start:\n${hostOut.text()}`)
    if (api !== 'dpdk') {
      guest = spawn('taskset', ['-c', cfg.guestCpus ?? String(cfg.guestCpu), 'node', '--import', 'tsx', path.join(REPO, 'benchmark/guest.ts'),
        tree, uuid, api, dir, String(size), String(queues)], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
      guestOut = collect(guest)
      if (!(await guestOut.wait(/^ready$/m, 60_000))) throw new Error(`guest did not open the device:\n${guestOut.text()}`)
    }
    // Warm-up: traffic has started at the host, then 300 ms more.
    const frames = (s: Stats) => (dir === 'tx' ? s.totals.guestToHostFrames : s.totals.hostToGuestFrames)
    const end = performance.now() + 60_000
    while (performance.now() < end) {
      if (frames((await stats(tree)).s) > 0) break
      if (host.exitCode !== null) break
      await sleep(50)
    }
    await sleep(300)
    const out: Sample[] = []
    for (let w = 0; w < cfg.windows; w++) {
      const a = await stats(tree)
      await sleep(cfg.ms)
      const b = await stats(tree)
      const secs = (b.at - a.at) / 1000
      const df = frames(b.s) - frames(a.s)
      const bytes = (s: Stats) => (dir === 'tx' ? s.totals.guestToHostBytes : s.totals.hostToGuestBytes)
      const busy = b.s.channels.map((c, i) => ((c.workerBusyNs ?? 0) - (a.s.channels[i]?.workerBusyNs ?? 0)) / 1e9 / secs)
      if (dir === 'rx') busy.push(((b.s.rxBusyNs ?? 0) - (a.s.rxBusyNs ?? 0)) / 1e9 / secs)
      const drops = (s: Stats) => s.totals.drops.noRxBuffer + s.totals.drops.ringFull
      const dd = drops(b.s) - drops(a.s)
      const chFrames = (c: Stats['channels'][number] | undefined) => (dir === 'tx' ? c?.guestToHostFrames : c?.hostToGuestFrames) ?? 0
      const channelMpps = b.s.channels.map((c, i) => Number(((chFrames(c) - chFrames(a.s.channels[i])) / secs / 1e6).toFixed(4)))
      out.push({ channelMpps, mpps: df / secs / 1e6, hostDropFrac: df + dd > 0 ? dd / (df + dd) : 0, gbps: ((bytes(b.s) - bytes(a.s)) * 8) / secs / 1e9, hostBusy: Math.max(...busy),
        hostBusyThreads: busy.map((x) => Number(x.toFixed(3))), load1: os.loadavg()[0] ?? 0 })
    }
    if (out.every((s) => s.mpps === 0)) {
      throw new Error(`no traffic at the host; host transcript tail:\n${hostOut.text().split('\n').slice(-15).join('\n')}`)
    }
    return out
  } catch (err) {
    const tail = (t: string) => t.split('\n').filter((l) => l.trim() !== '').slice(-6).join(' | ')
    throw new Error(`${err instanceof Error ? err.message.split('\n')[0]! : String(err)}; host: ${tail(hostOut.text())}` +
      (guestOut !== null ? `; guest: ${tail(guestOut.text())}` : ''))
  } finally {
    if (guest !== null) await stop(guest, 'SIGKILL')
    if (api === 'dpdk') {
      host.stdin?.end() // testpmd ("Press enter to exit") quits; the emulator stops with it
      const t = performance.now() + 15_000
      while (host.exitCode === null && host.signalCode === null && performance.now() < t) await sleep(50)
    }
    await stop(host, 'SIGTERM')
    fs.rmSync(tree, { recursive: true, force: true })
  }
}

export function summary(v: number[]): { min: number; median: number; max: number } {
  const s = [...v].sort((a, b) => a - b)
  const n = s.length
  return { min: s[0] ?? 0, median: n === 0 ? 0 : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2, max: s[n - 1] ?? 0 }
}

interface RingRow {
  payload: number
  ringMsgPerSec: number
  ringGBps: number
  memcpyGBps: number
  ratio: number
}

function ringBench(secs: number, cpus: string): { rows: RingRow[]; note?: string } {
  try {
    const text = execFileSync('taskset', ['-c', cpus, 'cargo', 'bench', '-q', '-p', 'vmbus-ring', '--bench', 'ring'], {
      cwd: REPO, env: { ...process.env, BENCH_SECS: String(secs) }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 1 << 24,
    })
    const rows: RingRow[] = []
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/).map(Number)
      if (f.length === 5 && f.every(Number.isFinite)) {
        rows.push({ payload: f[0]!, ringMsgPerSec: f[1]!, ringGBps: f[2]!, memcpyGBps: f[3]!, ratio: f[4]! })
      }
    }
    return rows.length > 0 ? { rows } : { rows, note: `no rows parsed from cargo bench output:\n${text}` }
  } catch (err) {
    return { rows: [], note: `cargo bench -p vmbus-ring failed: ${String(err).split('\n')[0]}` }
  }
}

const LABEL: Record<Api, string> = { dpdk: 'DPDK 22.11 testpmd', rust: 'Rust core', ts: 'TS burst API' }
const COLOR: Record<Api, string> = { dpdk: '#c0504d', rust: '#4f81bd', ts: '#9bbb59' }

function markdown(points: Point[], meta: Record<string, unknown>, ring: { rows: RingRow[]; note?: string }): string {
  const f = (x: number) => (x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3))
  const get = (api: Api, dir: Dir, size: number, q: number) =>
    points.find((p) => p.api === api && p.dir === dir && p.size === size && p.queues === q)
  const lines = [`# netvsc vs DPDK 22.11 testpmd (${String(meta.date)})`, '',
    `Load average at start ${String(meta.loadStart)}, at end ${String(meta.loadEnd)} on ${String(meta.cpus)} CPUs; host on CPU ${String(meta.hostCpu)}, guest on CPU ${String(meta.guestCpu)}; ` +
    `${String(meta.runs)} start(s) × ${String(meta.windows)} window(s) of ${String(meta.ms)} ms per point. Re-run: \`${String(meta.command)}\`.`, '',
    'Mpps median (min–max) at the host\'s counters; "host busy" = the busiest host thread\'s fraction of the window spent in turns that moved packets (median); for rx "host drops" = frames the unlimited generator could not place for want of a guest buffer, per frame offered (> 0: the host had more than the guest took); ratios are of medians.', '',
    '| dir | frame B | queues | DPDK Mpps | Rust core Mpps | TS API Mpps | Rust/DPDK | TS/Rust | Rust Gbit/s | host busy (DPDK / Rust / TS) | rx host drops (DPDK / Rust / TS) |',
    '|---|---|---|---|---|---|---|---|---|---|---|']
  const keys = [...new Set(points.map((p) => `${p.dir}|${p.size}|${p.queues}`))]
  for (const k of keys) {
    const [dir, s, q] = k.split('|') as [Dir, string, string]
    const size = Number(s)
    const queues = Number(q)
    const cell = (api: Api) => {
      const p = get(api, dir, size, queues)
      if (p === undefined) return 'not run'
      if (p.samples.length === 0) return `n/a${p.note !== undefined ? ` (${p.note.split('\n')[0]!.slice(0, 80)})` : ''}`
      const m = summary(p.samples.map((x) => x.mpps))
      return `${f(m.median)} (${f(m.min)}–${f(m.max)})`
    }
    const med = (api: Api, k2: keyof Sample = 'mpps') => {
      const p = get(api, dir, size, queues)
      return p === undefined || p.samples.length === 0 ? NaN : summary(p.samples.map((x) => x[k2] as number)).median
    }
    const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '-')
    const drop = dir === 'tx' ? '-' : (['dpdk', 'rust', 'ts'] as Api[]).map((a) => (Number.isFinite(med(a, 'hostDropFrac')) ? `${(med(a, 'hostDropFrac') * 100).toFixed(0)}%` : '-')).join(' / ')
    const busy = (['dpdk', 'rust', 'ts'] as Api[]).map((a) => (Number.isFinite(med(a, 'hostBusy')) ? `${(med(a, 'hostBusy') * 100).toFixed(0)}%` : '-')).join(' / ')
    lines.push(`| ${dir} | ${size} | ${queues} | ${cell('dpdk')} | ${cell('rust')} | ${cell('ts')} | ${ratio(med('rust'), med('dpdk'))} | ` +
      `${ratio(med('ts'), med('rust'))} | ${Number.isFinite(med('rust', 'gbps')) ? med('rust', 'gbps').toFixed(2) : '-'} | ${busy} | ${drop} |`)
  }
  const notes = points.filter((p) => p.note !== undefined)
  if (notes.length > 0) {
    lines.push('', 'Notes:')
    const byNote = new Map<string, Point[]>()
    for (const p of notes) {
      const k = p.note!.split('\n')[0]!
      byNote.set(k, [...(byNote.get(k) ?? []), p])
    }
    for (const [note, ps] of byNote) lines.push(`- ${ps.map((p) => `${p.api} ${p.dir} ${p.size} B ${p.queues}q`).join(', ')}: ${note}`)
  }
  lines.push('', '## Ring (vmbus-ring bench, same run): writer and reader threads vs one-thread memcpy', '')
  if (ring.rows.length > 0) {
    lines.push('| payload B | ring msg/s | ring GB/s | memcpy GB/s | ring/memcpy |', '|---|---|---|---|---|')
    for (const r of ring.rows) lines.push(`| ${r.payload} | ${r.ringMsgPerSec.toFixed(0)} | ${r.ringGBps.toFixed(2)} | ${r.memcpyGBps.toFixed(2)} | ${r.ratio.toFixed(3)} |`)
  }
  if (ring.note !== undefined) lines.push('', `Ring: ${ring.note}`)
  lines.push('', '![chart](vs-dpdk.svg)', '')
  return lines.join('\n')
}

/** Grouped bars (median Mpps, min–max whiskers), one panel per queue count; each group scaled to its own tallest bar. */
function svg(points: Point[], meta: Record<string, unknown>): string {
  const apis: Api[] = ['dpdk', 'rust', 'ts']
  const queueCounts = [...new Set(points.map((p) => p.queues))].sort()
  const groups = [...new Set(points.map((p) => `${p.dir}|${p.size}`))]
  const gw = 90
  const bw = 22
  const ph = 220
  const left = 50
  const width = left + groups.length * gw + 160
  const height = 40 + queueCounts.length * (ph + 60)
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="18" font-size="13">${esc(`Mpps at the host, median with min–max (load avg ${String(meta.loadStart)}); bars of a group scaled to its tallest, value on top`)}</text>`]
  queueCounts.forEach((q, pi) => {
    const top = 40 + pi * (ph + 60)
    const base = top + ph
    out.push(`<text x="${left}" y="${top + 4}" font-size="12">${q} queue${q > 1 ? 's' : ''}</text>`)
    out.push(`<line x1="${left}" y1="${base}" x2="${left + groups.length * gw}" y2="${base}" stroke="#333"/>`)
    groups.forEach((g, gi) => {
      const [dir, size] = g.split('|') as [Dir, string]
      const ps = apis.map((a) => points.find((p) => p.api === a && p.dir === dir && p.size === Number(size) && p.queues === q))
      const maxv = Math.max(1e-9, ...ps.flatMap((p) => (p === undefined ? [] : p.samples.map((s) => s.mpps))))
      const x0 = left + gi * gw + 8
      ps.forEach((p, ai) => {
        const x = x0 + ai * bw
        if (p === undefined || p.samples.length === 0) {
          out.push(`<text x="${x + 4}" y="${base - 4}" fill="#888">n/a</text>`)
          return
        }
        const m = summary(p.samples.map((s) => s.mpps))
        const h = (v: number) => ((ph - 30) * v) / maxv
        out.push(`<rect x="${x}" y="${base - h(m.median)}" width="${bw - 4}" height="${h(m.median)}" fill="${COLOR[p.api]}"/>`)
        const cx = x + (bw - 4) / 2
        out.push(`<line x1="${cx}" y1="${base - h(m.min)}" x2="${cx}" y2="${base - h(m.max)}" stroke="#000"/>`)
        out.push(`<text x="${cx}" y="${base - h(m.max) - 4}" text-anchor="middle" font-size="9">${m.median.toFixed(m.median >= 1 ? 2 : 3)}</text>`)
      })
      out.push(`<text x="${x0 + 30}" y="${base + 16}" text-anchor="middle">${dir} ${size} B</text>`)
    })
  })
  apis.forEach((a, i) => {
    const y = 50 + i * 18
    const x = left + groups.length * gw + 20
    out.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLOR[a]}"/><text x="${x + 18}" y="${y + 10}">${esc(LABEL[a])}</text>`)
  })
  out.push('</svg>')
  return out.join('\n')
}

export async function runVsDpdk(argv: string[]): Promise<void> {
  const render = opt(argv, 'render')
  if (render !== undefined) {
    // Re-render the markdown and the SVG beside a results JSON (e.g. after changing the layout).
    const doc = JSON.parse(fs.readFileSync(render, 'utf8')) as { meta: Record<string, unknown>; points: Point[]; ring: { rows: RingRow[]; note?: string } }
    const base = render.replace(/\.json$/, '')
    fs.writeFileSync(`${base}.md`, markdown(doc.points, doc.meta, doc.ring).replace('vs-dpdk.svg', path.basename(`${base}.svg`)))
    fs.writeFileSync(`${base}.svg`, svg(doc.points, doc.meta))
    console.log(`wrote ${base}.{md,svg}`)
    return
  }
  const quick = argv.includes('--quick')
  const sizes = list(opt(argv, 'sizes'), quick ? [64, 1500] : [64, 512, 1500, 9000])
  const queueCounts = list(opt(argv, 'queues'), quick ? [1] : [1, 2])
  const drivers = (opt(argv, 'drivers')?.split(',') ?? ['dpdk', 'rust', 'ts']) as Api[]
  const runs = Number(opt(argv, 'runs') ?? 1)
  const cfg: Cfg = {
    ms: Number(opt(argv, 'ms') ?? (quick ? 400 : 1000)),
    windows: Number(opt(argv, 'windows') ?? 3),
    hostCpu: Number(opt(argv, 'host-cpu') ?? 0),
    guestCpu: Number(opt(argv, 'guest-cpu') ?? 1),
  }
  const outDir = path.resolve(opt(argv, 'out') ?? path.join(REPO, 'benchmark/results'))
  const skip = drivers.includes('dpdk') ? dpdkSkip() : null
  if (skip !== null) console.log(`SKIP: DPDK rows: ${skip}`)
  const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')
  const meta: Record<string, unknown> = {
    date: new Date().toISOString(), loadStart: load(), cpus: os.cpus().length, node: process.version,
    hostCpu: cfg.hostCpu, guestCpu: cfg.guestCpu, runs, windows: cfg.windows, ms: cfg.ms, burst: 32,
    command: `npm run bench -- --vs-dpdk${quick ? ' --quick' : ''}`, dpdkSkip: skip,
  }
  console.log(`vs-dpdk: sizes ${sizes.join(',')}; queues ${queueCounts.join(',')}; ${runs} start(s) × ${cfg.windows} window(s) of ${cfg.ms} ms; load ${String(meta.loadStart)}`)
  const points: Point[] = []
  for (const q of queueCounts) {
    for (const dir of ['tx', 'rx'] as Dir[]) {
      for (const size of sizes) {
        for (const api of drivers) {
          const p: Point = { api, dir, size, queues: q, samples: [] }
          points.push(p)
          if (api === 'dpdk' && skip !== null) {
            p.note = `skipped: ${skip}`
            continue
          }
          for (let r = 0; r < runs; r++) {
            try {
              p.samples.push(...(await runOnce(cfg, api, dir, size, q)))
            } catch (err) {
              p.note = String(err instanceof Error ? err.message : err)
              break
            }
          }
          const m = summary(p.samples.map((s) => s.mpps))
          const busy = summary(p.samples.map((s) => s.hostBusy)).median
          console.log(`${dir} ${String(size).padStart(4)} B ${q}q ${api.padEnd(4)}: ${p.samples.length > 0 ? `${m.median.toFixed(3)} Mpps (${m.min.toFixed(3)}–${m.max.toFixed(3)}), host busy ${(busy * 100).toFixed(0)}%${dir === 'rx' ? `, host drops ${(summary(p.samples.map((x) => x.hostDropFrac)).median * 100).toFixed(0)}%` : ''}` : `n/a: ${p.note?.split('\n')[0] ?? ''}`} [load ${load()}]`)
        }
      }
    }
  }
  const ring = ringBench(quick ? 0.3 : 1, `${cfg.hostCpu},${cfg.guestCpu}`)
  meta.loadEnd = load()
  fs.mkdirSync(outDir, { recursive: true })
  const base = path.join(outDir, quick ? 'vs-dpdk-quick' : 'vs-dpdk')
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ meta, points, ring }, null, 1)}\n`)
  fs.writeFileSync(`${base}.md`, markdown(points, meta, ring).replace('vs-dpdk.svg', path.basename(`${base}.svg`)))
  fs.writeFileSync(`${base}.svg`, svg(points, meta))
  console.log(markdown(points, meta, ring))
  console.log(`wrote ${base}.{json,md,svg}`)
}
