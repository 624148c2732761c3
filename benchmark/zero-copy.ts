/**
 * `npm run bench -- --zero-copy [--quick] [options]`: zero-copy transmit from the tx region (`txBurstZeroCopy`,
 * `rustTxZeroCopyLoop`) against the copying path (`txBurst`, `rustTxLoop`) at 1500 and 9000 B, for the TS API and
 * the Rust core. As in `--vs-dpdk` (whose launch code this reuses), each guest is its own process (benchmark/guest.ts)
 * against `netvsc emulate --busy-poll --backend sink` in another, host and guest pinned, the rate read at the host's
 * counters over windows after warm-up. Issue 11 item 4 asks zero-copy ≥ 1.3× copying at both sizes.
 *
 * Results: benchmark/results/zero-copy{,-quick}.{json,md}. Options: --sizes 1500,9000, --queues 1, --runs N,
 * --windows N (default 3), --ms N (default 1000; quick 400), --host-cpu C, --guest-cpu C.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { type Cfg, type GuestApi, type Sample, opt, runOnce, summary } from './vs-dpdk.js'

const REPO = path.resolve(__dirname, '..')
const APIS: GuestApi[] = ['ts', 'ts-zc', 'ts-zc32', 'rust', 'rust-zc', 'rust-zc32']
const LABEL: Record<string, string> = {
  ts: 'TS txBurst (copy)',
  'ts-zc': 'TS txBurstZeroCopy',
  'ts-zc32': 'TS txBurstZeroCopy, 32 buffers',
  rust: 'Rust tx_burst (copy)',
  'rust-zc': 'Rust tx_burst_zero_copy',
  'rust-zc32': 'Rust tx_burst_zero_copy, 32 buffers',
}

interface Point {
  api: GuestApi
  size: number
  queues: number
  samples: Sample[]
  note?: string
}

function markdown(points: Point[], meta: Record<string, unknown>): string {
  const f = (x: number) => (x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3))
  const med = (p: Point | undefined, k: keyof Sample = 'mpps') =>
    p === undefined || p.samples.length === 0 ? NaN : summary(p.samples.map((s) => s[k] as number)).median
  const cell = (p: Point | undefined) => {
    if (p === undefined) return 'not run'
    if (p.samples.length === 0) return `n/a (${(p.note ?? '').split('\n')[0]!.slice(0, 80)})`
    const m = summary(p.samples.map((s) => s.mpps))
    return `${f(m.median)} (${f(m.min)}–${f(m.max)})`
  }
  const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '-')
  const lines = [`# Zero-copy tx vs the copying path (${String(meta.date)})`, '',
    `Load average at start ${String(meta.loadStart)}, at end ${String(meta.loadEnd)} on ${String(meta.cpus)} CPUs; host (sink, busy-poll) on CPU ${String(meta.hostCpu)}, guest on CPU ${String(meta.guestCpu)}; ` +
    `${String(meta.runs)} start(s) × ${String(meta.windows)} window(s) of ${String(meta.ms)} ms per point, burst 32. Re-run: \`${String(meta.command)}\`.`, '',
    'Mpps median (min–max) at the host\'s counters; Gbit/s of the zero-copy medians; host busy = busiest host thread (median; above 100% one host drain ran across windows: the host never ran dry). ' +
    'The copying path holds at most 32 GPA-direct frames in flight per queue (`tx_gpa_slots`, one 68 KiB slot each); the region defaults to 1024 × 2 KiB (256 × 16 KiB at 9000 B), so "zc32" rows (a 32-buffer region) separate the saved copy from the deeper pipeline. Target (issue 11 item 4): zero-copy ≥ 1.3× copying.', '',
    '| frame B | queues | TS copy | TS zero-copy | TS zc/copy | TS zc32 | Rust copy | Rust zero-copy | Rust zc/copy | Rust zc32 | zc Gbit/s (TS / Rust) | host busy (TS / zc / zc32, Rust / zc / zc32) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|']
  const keys = [...new Set(points.map((p) => `${p.size}|${p.queues}`))]
  for (const k of keys) {
    const [s, q] = k.split('|').map(Number) as [number, number]
    const get = (api: GuestApi) => points.find((p) => p.api === api && p.size === s && p.queues === q)
    const busy = APIS.map((a) => (Number.isFinite(med(get(a), 'hostBusy')) ? `${(med(get(a), 'hostBusy') * 100).toFixed(0)}%` : '-')).join(' / ')
    const gb = (a: GuestApi) => (Number.isFinite(med(get(a), 'gbps')) ? med(get(a), 'gbps').toFixed(2) : '-')
    lines.push(`| ${s} | ${q} | ${cell(get('ts'))} | ${cell(get('ts-zc'))} | ${ratio(med(get('ts-zc')), med(get('ts')))} | ${cell(get('ts-zc32'))} | ${cell(get('rust'))} | ` +
      `${cell(get('rust-zc'))} | ${ratio(med(get('rust-zc')), med(get('rust')))} | ${cell(get('rust-zc32'))} | ${gb('ts-zc')} / ${gb('rust-zc')} | ${busy} |`)
  }
  const notes = points.filter((p) => p.note !== undefined)
  if (notes.length > 0) {
    lines.push('', 'Notes:')
    for (const p of notes) lines.push(`- ${LABEL[p.api]} ${p.size} B ${p.queues}q: ${p.note!.split('\n')[0]}`)
  }
  lines.push('')
  return lines.join('\n')
}

export async function runZeroCopy(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick')
  const list = (s: string | undefined, d: number[]) => (s === undefined ? d : s.split(',').map(Number))
  const sizes = list(opt(argv, 'sizes'), [1500, 9000])
  const queueCounts = list(opt(argv, 'queues'), [1])
  const runs = Number(opt(argv, 'runs') ?? 1)
  const cfg: Cfg = {
    ms: Number(opt(argv, 'ms') ?? (quick ? 400 : 1000)),
    windows: Number(opt(argv, 'windows') ?? 3),
    hostCpu: Number(opt(argv, 'host-cpu') ?? 0),
    guestCpu: Number(opt(argv, 'guest-cpu') ?? 1),
  }
  const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')
  const meta: Record<string, unknown> = {
    date: new Date().toISOString(), loadStart: load(), cpus: os.cpus().length, node: process.version,
    hostCpu: cfg.hostCpu, guestCpu: cfg.guestCpu, runs, windows: cfg.windows, ms: cfg.ms, burst: 32,
    command: `npm run bench -- --zero-copy${quick ? ' --quick' : ''}`,
  }
  console.log(`zero-copy: sizes ${sizes.join(',')}; queues ${queueCounts.join(',')}; ${runs} start(s) × ${cfg.windows} window(s) of ${cfg.ms} ms; load ${String(meta.loadStart)}`)
  const points: Point[] = []
  for (const q of queueCounts) {
    for (const size of sizes) {
      for (const api of APIS) {
        const p: Point = { api, size, queues: q, samples: [] }
        points.push(p)
        for (let r = 0; r < runs; r++) {
          try {
            p.samples.push(...(await runOnce(cfg, api, 'tx', size, q)))
          } catch (err) {
            p.note = String(err instanceof Error ? err.message : err)
            break
          }
        }
        const m = summary(p.samples.map((s) => s.mpps))
        console.log(`tx ${String(size).padStart(4)} B ${q}q ${api.padEnd(7)}: ${p.samples.length > 0 ? `${m.median.toFixed(3)} Mpps (${m.min.toFixed(3)}–${m.max.toFixed(3)}), host busy ${(summary(p.samples.map((s) => s.hostBusy)).median * 100).toFixed(0)}%` : `n/a: ${p.note?.split('\n')[0] ?? ''}`} [load ${load()}]`)
      }
    }
  }
  meta.loadEnd = load()
  const outDir = path.resolve(opt(argv, 'out') ?? path.join(REPO, 'benchmark/results'))
  fs.mkdirSync(outDir, { recursive: true })
  const base = path.join(outDir, quick ? 'zero-copy-quick' : 'zero-copy')
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ meta, points }, null, 1)}\n`)
  fs.writeFileSync(`${base}.md`, markdown(points, meta))
  console.log(markdown(points, meta))
  console.log(`wrote ${base}.{json,md}`)
}
