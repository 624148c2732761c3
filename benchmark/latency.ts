/**
 * `npm run bench -- --latency [--quick] [options]`: ping-pong round trips of a 64-byte frame, one frame in flight,
 * through the emulated host's loopback backend, reported as p50 / p99 / p99.9 (and min, max, mean) in µs, for the
 * devarg `latency` at 0, 50 and 100 µs (how long the host may wait before it scans the guest's ring; the emulator's
 * channel worker sleeps that long between scans, 0 = only yield) and for a busy-polling host (`--busy-poll`), each
 * for the Rust core (`rustPingPong`), the TS burst API (`txBurst` + `rxBurst`) and DPDK 22.11's netvsc PMD in the same
 * run. The DPDK guest is benchmark/dpdk-pingpong.c, built here with gcc against the installed DPDK
 * (`pkg-config --cflags --libs libdpdk`) and run under `netvsc emulate --run` with the interposer, as
 * benchmark/vs-dpdk.ts runs testpmd (devargs through `-a UUID,latency=N`). Every guest is its own process, the host
 * in another, host pinned to `--host-cpu`, guest to `--guest-cpu`; each guest times its own round trips (from just
 * before the send to the receive call that returns the frame).
 *
 * Results: benchmark/results/latency{,-quick}.{json,md}. Options: --quick (2,000 round trips per point instead of
 * 20,000), --count N, --warm N (unrecorded round trips first, default 500), --runs N (fresh starts per point),
 * --drivers dpdk,rust,ts, --modes 0,50,100,busy, --host-cpu C, --guest-cpu C, --out DIR.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { collect, dpdkSkip, opt, stop, sleep, summary } from './vs-dpdk.js'

const REPO = path.resolve(__dirname, '..')
type LatApi = 'dpdk' | 'rust' | 'ts'
const LABEL: Record<LatApi, string> = { dpdk: 'DPDK 22.11 PMD', rust: 'Rust core', ts: 'TS burst API' }

interface Mode {
  name: string
  latencyUs: number
  busyPoll: boolean
}
const MODES: Record<string, Mode> = {
  '0': { name: 'latency=0', latencyUs: 0, busyPoll: false },
  '50': { name: 'latency=50', latencyUs: 50, busyPoll: false },
  '100': { name: 'latency=100', latencyUs: 100, busyPoll: false },
  busy: { name: 'busy-poll host', latencyUs: 50, busyPoll: true },
}

interface Rtt {
  n: number
  lost: number
  minUs: number
  p50Us: number
  p99Us: number
  p999Us: number
  maxUs: number
  meanUs: number
}
interface Point {
  api: LatApi
  mode: string
  runs: Rtt[]
  note?: string
}
interface Cfg {
  count: number
  warm: number
  hostCpu: number
  guestCpu: number
}

/** Compile benchmark/dpdk-pingpong.c into a temp dir; the binary or why not. */
function buildPingPong(): { bin?: string; why?: string } {
  const flags = spawnSync('pkg-config', ['--cflags', '--libs', 'libdpdk'], { encoding: 'utf8' })
  if (flags.status !== 0) return { why: `pkg-config libdpdk failed (Debian package dpdk-dev): ${(flags.stderr ?? '').trim() || String(flags.error)}` }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nv-pingpong-'))
  const bin = path.join(dir, 'pingpong')
  const cc = spawnSync('gcc', ['-O2', '-Wall', '-o', bin, path.join(REPO, 'benchmark/dpdk-pingpong.c'), ...flags.stdout.trim().split(/\s+/)], { encoding: 'utf8' })
  if (cc.status !== 0) return { why: `gcc failed: ${(cc.stderr ?? '').trim().split('\n').slice(0, 3).join(' | ') || String(cc.error)}` }
  return { bin }
}

function parseResult(text: string): Rtt | null {
  const m = /^result (\{.*\})$/m.exec(text)
  return m === null ? null : (JSON.parse(m[1]!) as Rtt)
}

async function runOnce(cfg: Cfg, api: LatApi, mode: Mode, bin: string | undefined): Promise<Rtt> {
  const tree = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'nvl-'))
  const uuid = randomUUID()
  const emuArgs = ['node', '--import', 'tsx', path.join(REPO, 'src/cli.ts'), 'emulate', '--dir', tree, '--uuid', uuid,
    '--backend', 'loopback', '--max-queues', '1', ...(mode.busyPoll ? ['--busy-poll'] : [])]
  const limitMs = 60_000 + cfg.count * 5
  let guest: ChildProcess | null = null
  let host: ChildProcess
  if (api === 'dpdk') {
    const prefix = `nvl${process.pid}${Math.floor(Math.random() * 1e6)}`
    const run = ['taskset', '-c', String(cfg.guestCpu), bin!, '-l', String(cfg.guestCpu), '--no-huge', '-m', '256', '--no-pci',
      '--file-prefix', prefix, '--log-level', 'lib.eal:error', '-a', `${uuid},latency=${mode.latencyUs}`, '--', String(cfg.count), String(cfg.warm)]
    host = spawn('taskset', ['-c', String(cfg.hostCpu), ...emuArgs, '--run', '--', ...run], {
      cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HV_EMU_DPDK_QUEUE_STATE_FIX: '1' },
    })
  } else {
    host = spawn('taskset', ['-c', String(cfg.hostCpu), ...emuArgs], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  }
  const hostOut = collect(host)
  let guestOut: ReturnType<typeof collect> | null = null
  try {
    if (api === 'dpdk') {
      if (!(await hostOut.wait(/^result \{/m, limitMs))) throw new Error('the DPDK guest gave no result')
      const r = parseResult(hostOut.text())
      if (r === null) throw new Error('unparsable DPDK result')
      return r
    }
    if (!(await hostOut.wait(/^emulating /m, 60_000))) throw new Error('emulator did not start')
    guest = spawn('taskset', ['-c', String(cfg.guestCpu), 'node', '--import', 'tsx', path.join(REPO, 'benchmark/ping.ts'),
      tree, uuid, api, String(mode.latencyUs), String(cfg.count), String(cfg.warm)], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    guestOut = collect(guest)
    if (!(await guestOut.wait(/^result \{/m, limitMs))) throw new Error('the guest gave no result')
    const r = parseResult(guestOut.text())
    if (r === null) throw new Error('unparsable guest result')
    return r
  } catch (err) {
    const tail = (t: string) => t.split('\n').filter((l) => l.trim() !== '').slice(-6).join(' | ')
    throw new Error(`${err instanceof Error ? err.message : String(err)}; host: ${tail(hostOut.text())}` +
      (guestOut !== null ? `; guest: ${tail(guestOut.text())}` : ''))
  } finally {
    if (guest !== null) await stop(guest, 'SIGKILL')
    if (api === 'dpdk') {
      const t = performance.now() + 15_000
      while (host.exitCode === null && host.signalCode === null && performance.now() < t) await sleep(50)
    }
    await stop(host, 'SIGTERM')
    fs.rmSync(tree, { recursive: true, force: true })
  }
}

/** Medians over runs of each statistic. */
function merged(p: Point): Rtt | null {
  if (p.runs.length === 0) return null
  const m = (k: keyof Rtt) => summary(p.runs.map((r) => r[k])).median
  return { n: p.runs.reduce((a, r) => a + r.n, 0), lost: p.runs.reduce((a, r) => a + r.lost, 0), minUs: m('minUs'), p50Us: m('p50Us'),
    p99Us: m('p99Us'), p999Us: m('p999Us'), maxUs: m('maxUs'), meanUs: m('meanUs') }
}

function markdown(points: Point[], meta: Record<string, unknown>, apis: LatApi[], modes: Mode[]): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))
  const lines = [`# Ping-pong latency, 64 B, one frame in flight (${String(meta.date)})`, '',
    `Host: \`netvsc emulate --backend loopback\` (busy-polling only in the last row) on CPU ${String(meta.hostCpu)}, guest on CPU ${String(meta.guestCpu)}, each its own process; ` +
    `${String(meta.count)} round trips per point after ${String(meta.warm)} unrecorded, ${String(meta.runs)} start(s) (medians of the starts' figures). ` +
    `Load average at start ${String(meta.loadStart)}, at end ${String(meta.loadEnd)} on ${String(meta.cpus)} CPUs. Re-run: \`${String(meta.command)}\`.`, '',
    'Round trip in µs, p50 / p99 / p99.9 (min–max); `latency` is the guest\'s devarg (µs the host may wait before scanning its ring; the emulator\'s channel worker sleeps that long between scans, and at 0 only yields).', '',
    `| host | ${apis.map((a) => LABEL[a]).join(' | ')} |`, `|---|${apis.map(() => '---|').join('')}`]
  for (const mode of modes) {
    const cells = apis.map((api) => {
      const p = points.find((x) => x.api === api && x.mode === mode.name)
      if (p === undefined) return 'not run'
      const r = merged(p)
      if (r === null) return `n/a (${(p.note ?? '').split('\n')[0]!.slice(0, 90)})`
      return `${f(r.p50Us)} / ${f(r.p99Us)} / ${f(r.p999Us)} (${f(r.minUs)}–${f(r.maxUs)})${r.lost > 0 ? `, ${r.lost} lost` : ''}`
    })
    lines.push(`| ${mode.name} | ${cells.join(' | ')} |`)
  }
  const notes = points.filter((p) => p.note !== undefined)
  if (notes.length > 0) {
    lines.push('', 'Notes:')
    for (const p of notes) lines.push(`- ${LABEL[p.api]}, ${p.mode}: ${p.note!.split('\n')[0]}`)
  }
  lines.push('')
  return lines.join('\n')
}

export async function runLatency(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick')
  const cfg: Cfg = {
    count: Number(opt(argv, 'count') ?? (quick ? 2000 : 20_000)),
    warm: Number(opt(argv, 'warm') ?? 500),
    hostCpu: Number(opt(argv, 'host-cpu') ?? 0),
    guestCpu: Number(opt(argv, 'guest-cpu') ?? 1),
  }
  const runs = Number(opt(argv, 'runs') ?? 1)
  const apis = (opt(argv, 'drivers')?.split(',') ?? ['dpdk', 'rust', 'ts']) as LatApi[]
  const modes = (opt(argv, 'modes')?.split(',') ?? ['0', '50', '100', 'busy']).map((k) => {
    const m = MODES[k]
    if (m === undefined) throw new Error(`--modes: unknown mode '${k}' (0, 50, 100, busy)`)
    return m
  })
  let dpdk: { bin?: string; why?: string } = {}
  if (apis.includes('dpdk')) {
    const skip = dpdkSkip()
    dpdk = skip !== null ? { why: skip } : buildPingPong()
    if (dpdk.why !== undefined) console.log(`SKIP: DPDK rows: ${dpdk.why}`)
  }
  const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')
  const meta: Record<string, unknown> = {
    date: new Date().toISOString(), loadStart: load(), cpus: os.cpus().length, node: process.version, hostCpu: cfg.hostCpu,
    guestCpu: cfg.guestCpu, count: cfg.count, warm: cfg.warm, runs, frame: 64, dpdkSkip: dpdk.why ?? null,
    command: `npm run bench -- --latency${quick ? ' --quick' : ''}`,
  }
  console.log(`latency: ${cfg.count} round trips per point (+${cfg.warm} warm-up), ${runs} start(s); modes ${modes.map((m) => m.name).join(', ')}; load ${String(meta.loadStart)}`)
  const points: Point[] = []
  for (const mode of modes) {
    for (const api of apis) {
      const p: Point = { api, mode: mode.name, runs: [] }
      points.push(p)
      if (api === 'dpdk' && dpdk.why !== undefined) {
        p.note = `skipped: ${dpdk.why}`
        continue
      }
      for (let r = 0; r < runs; r++) {
        try {
          p.runs.push(await runOnce(cfg, api, mode, dpdk.bin))
        } catch (err) {
          p.note = String(err instanceof Error ? err.message : err)
          break
        }
      }
      const m = merged(p)
      console.log(`${mode.name.padEnd(14)} ${api.padEnd(4)}: ${m !== null ? `p50 ${m.p50Us.toFixed(1)} µs, p99 ${m.p99Us.toFixed(1)}, p99.9 ${m.p999Us.toFixed(1)} (min ${m.minUs.toFixed(1)}, max ${m.maxUs.toFixed(0)}), lost ${m.lost}` : `n/a: ${p.note?.split('\n')[0] ?? ''}`} [load ${load()}]`)
    }
  }
  if (dpdk.bin !== undefined) fs.rmSync(path.dirname(dpdk.bin), { recursive: true, force: true })
  meta.loadEnd = load()
  const outDir = path.resolve(opt(argv, 'out') ?? path.join(REPO, 'benchmark/results'))
  fs.mkdirSync(outDir, { recursive: true })
  const base = path.join(outDir, quick ? 'latency-quick' : 'latency')
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ meta, points }, null, 1)}\n`)
  fs.writeFileSync(`${base}.md`, markdown(points, meta, apis, modes))
  console.log(markdown(points, meta, apis, modes))
  console.log(`wrote ${base}.{json,md}`)
}
