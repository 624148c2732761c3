/**
 * `npm run bench -- --scaling [--quick] [options]`: one queue on one thread against two queues on two worker_threads
 * workers (each `openQueue`s its own queue and runs the same loop), and two queues polled in turn by one thread, for
 * the TS burst API and the Rust core, tx into the sink and rx from the unlimited generator. The host is `netvsc
 * emulate --busy-poll --max-queues 2` in its own process (one worker thread per channel, one rx pump), pinned to
 * `--host-cpu`; the guest process is pinned to `--guest-cpus` (default: every CPU but the host's). Launch and
 * measurement are benchmark/vs-dpdk.ts's (rates at the host's counters over windows after warm-up).
 *
 * Scaling needs a core per worker plus the host's: on a 2-core machine both workers share the one guest CPU, so the
 * 2-worker rows there measure two threads time-slicing one core, not scaling. The markdown says how many guest CPUs
 * the run had. Results: benchmark/results/scaling{,-quick}.{json,md}. Options: --sizes 64,1500, --runs N,
 * --windows N (default 3), --ms N (default 1000; quick 400), --host-cpu C, --guest-cpus LIST.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { type Cfg, type Dir, type GuestApi, type Sample, opt, runOnce, summary } from './vs-dpdk.js'

const REPO = path.resolve(__dirname, '..')

interface Shape {
  key: string
  label: string
  queues: number
  suffix: '' | '-mt'
}
const SHAPES: Shape[] = [
  { key: '1q', label: '1 queue, 1 thread', queues: 1, suffix: '' },
  { key: '2q1t', label: '2 queues, 1 thread', queues: 2, suffix: '' },
  { key: '2q2w', label: '2 queues, 2 workers', queues: 2, suffix: '-mt' },
]

interface Point {
  api: 'ts' | 'rust'
  shape: string
  dir: Dir
  size: number
  samples: Sample[]
  note?: string
}

function markdown(points: Point[], meta: Record<string, unknown>): string {
  const f = (x: number) => (x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3))
  const get = (api: string, shape: string, dir: Dir, size: number) => points.find((p) => p.api === api && p.shape === shape && p.dir === dir && p.size === size)
  const med = (p: Point | undefined) => (p === undefined || p.samples.length === 0 ? NaN : summary(p.samples.map((s) => s.mpps)).median)
  const cell = (p: Point | undefined) => {
    if (p === undefined) return 'not run'
    if (p.samples.length === 0) return `n/a (${(p.note ?? '').split('\n')[0]!.slice(0, 60)})`
    const m = summary(p.samples.map((s) => s.mpps))
    // Per-queue split (median of each channel) for two queues: both must carry traffic.
    const ch = p.samples[0]?.channelMpps ?? []
    const split = ch.length > 1 ? ` [${ch.map((_, i) => f(summary(p.samples.map((s) => s.channelMpps?.[i] ?? 0)).median)).join(' + ')}]` : ''
    return `${f(m.median)} (${f(m.min)}–${f(m.max)})${split}`
  }
  const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '-')
  const lines = [`# Queue scaling: 1 queue vs 2 queues on 2 worker_threads (${String(meta.date)})`, '',
    `Host \`netvsc emulate --busy-poll --max-queues 2\` on CPU ${String(meta.hostCpu)}; guest process on CPU(s) ${String(meta.guestCpus)} (${String(meta.guestCpuCount)} for the guest). ` +
    `${String(meta.runs)} start(s) × ${String(meta.windows)} window(s) of ${String(meta.ms)} ms per point. Load average at start ${String(meta.loadStart)}, at end ${String(meta.loadEnd)} on ${String(meta.cpus)} CPUs. Re-run: \`${String(meta.command)}\`.`, '',
    Number(meta.guestCpuCount) < 2
      ? '**One guest CPU only: the two workers time-slice it, so "2 workers" does not measure scaling here; a run with `--guest-cpus` naming two free CPUs does.**'
      : 'Each worker can have a guest CPU of its own.', '',
    'Aggregate Mpps at the host\'s counters, median (min–max); with two queues [queue 0 + queue 1] at the host\'s per-channel counters.', '',
    '| dir | frame B | API | 1 queue, 1 thread | 2 queues, 1 thread | 2 queues, 2 workers | 2 workers / 1 queue |', '|---|---|---|---|---|---|---|']
  const keys = [...new Set(points.map((p) => `${p.dir}|${p.size}|${p.api}`))]
  for (const k of keys) {
    const [dir, s, api] = k.split('|') as [Dir, string, string]
    const size = Number(s)
    lines.push(`| ${dir} | ${size} | ${api === 'ts' ? 'TS burst API' : 'Rust core'} | ${cell(get(api, '1q', dir, size))} | ${cell(get(api, '2q1t', dir, size))} | ` +
      `${cell(get(api, '2q2w', dir, size))} | ${ratio(med(get(api, '2q2w', dir, size)), med(get(api, '1q', dir, size)))} |`)
  }
  const notes = points.filter((p) => p.note !== undefined)
  if (notes.length > 0) {
    lines.push('', 'Notes:')
    for (const p of notes) lines.push(`- ${p.api} ${p.shape} ${p.dir} ${p.size} B: ${p.note!.split('\n')[0]}`)
  }
  lines.push('')
  return lines.join('\n')
}

export async function runScaling(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick')
  const sizes = (opt(argv, 'sizes') ?? (quick ? '64' : '64,1500')).split(',').map(Number)
  const hostCpu = Number(opt(argv, 'host-cpu') ?? 0)
  const all = os.cpus().map((_, i) => i)
  const guestCpus = opt(argv, 'guest-cpus') ?? (all.filter((c) => c !== hostCpu).join(',') || String(hostCpu))
  const runs = Number(opt(argv, 'runs') ?? 1)
  const cfg: Cfg = {
    ms: Number(opt(argv, 'ms') ?? (quick ? 400 : 1000)),
    windows: Number(opt(argv, 'windows') ?? 3),
    hostCpu,
    guestCpu: Number(guestCpus.split(',')[0]),
    guestCpus,
  }
  const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')
  const meta: Record<string, unknown> = {
    date: new Date().toISOString(), loadStart: load(), cpus: os.cpus().length, node: process.version, hostCpu, guestCpus,
    guestCpuCount: guestCpus.split(',').length, runs, windows: cfg.windows, ms: cfg.ms, burst: 32,
    command: `npm run bench -- --scaling${quick ? ' --quick' : ''}`,
  }
  console.log(`scaling: sizes ${sizes.join(',')}; host CPU ${hostCpu}, guest CPUs ${guestCpus}; load ${String(meta.loadStart)}`)
  const points: Point[] = []
  for (const dir of ['tx', 'rx'] as Dir[]) {
    for (const size of sizes) {
      for (const api of ['ts', 'rust'] as const) {
        for (const shape of SHAPES) {
          const p: Point = { api, shape: shape.key, dir, size, samples: [] }
          points.push(p)
          for (let r = 0; r < runs; r++) {
            try {
              p.samples.push(...(await runOnce(cfg, `${api}${shape.suffix}` as GuestApi, dir, size, shape.queues)))
            } catch (err) {
              p.note = String(err instanceof Error ? err.message : err)
              break
            }
          }
          const m = summary(p.samples.map((s) => s.mpps))
          console.log(`${dir} ${String(size).padStart(4)} B ${api.padEnd(4)} ${shape.label.padEnd(20)}: ${p.samples.length > 0 ? `${m.median.toFixed(3)} Mpps (${m.min.toFixed(3)}–${m.max.toFixed(3)})` : `n/a: ${p.note?.split('\n')[0] ?? ''}`} [load ${load()}]`)
        }
      }
    }
  }
  meta.loadEnd = load()
  const outDir = path.resolve(opt(argv, 'out') ?? path.join(REPO, 'benchmark/results'))
  fs.mkdirSync(outDir, { recursive: true })
  const base = path.join(outDir, quick ? 'scaling-quick' : 'scaling')
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ meta, points }, null, 1)}\n`)
  fs.writeFileSync(`${base}.md`, markdown(points, meta))
  console.log(markdown(points, meta))
  console.log(`wrote ${base}.{json,md}`)
}
