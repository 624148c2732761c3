/** `netvsc ctl` against a running `netvsc emulate` (child processes): the control socket's round trip without a VF
 * for everyone; link flap/speed and the generator's commands observed by a driver opened in this process; the stats
 * file rewritten while the emulator runs; (root only) the socket and the stats file during `--run`, and the VF
 * commands on `--vf` in a private network namespace via `unshare --net` (else a visible SKIP). */
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { META_WORDS, decodeRxMeta, open, type LinkEvent } from '../src/index.js'
import { canRunGuests } from '../src/emulator.js'
import { repo, runCli, scratchDir } from './helpers.js'

async function startEmulate(dir: string, extra: string[], netns: boolean): Promise<{ child: ChildProcess; out: () => string }> {
  const cli = [process.execPath, '--import', 'tsx', path.join(repo, 'src/cli.ts'), 'emulate', '--dir', dir, '--uuid', UUID, '--max-queues', '1', ...extra]
  const [cmd, ...args] = netns ? ['unshare', '--net', ...cli] : cli
  const child = spawn(cmd as string, args, { cwd: repo })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner: ${out}`)), 30_000)
    child.stdout?.on('data', () => /emulating/.test(out) && (clearTimeout(timer), resolve()))
    child.on('close', (code) => (clearTimeout(timer), reject(new Error(`emulate exited ${code}: ${out}`))))
  })
  return { child, out: () => out }
}

const UUID = '3c6e0b8a-5d1f-4e2a-9b7c-1a2b3c4d5e6f'

async function stop(child: ChildProcess): Promise<unknown> {
  child.kill('SIGTERM')
  return new Promise((r) => child.on('close', r))
}

function ctl(args: string[]): { status: number | null; reply: Record<string, unknown>; stderr: string } {
  const r = runCli(['ctl', ...args])
  let reply: Record<string, unknown> = {}
  try {
    reply = JSON.parse(r.stdout) as Record<string, unknown>
  } catch {}
  return { status: r.status, reply, stderr: r.stderr }
}

test('netvsc ctl: usage errors exit 2, no emulator exits 1', (t) => {
  t.is(runCli(['ctl']).status, 2)
  t.is(runCli(['ctl', '/tmp']).status, 2)
  t.regex(runCli(['ctl', '--help']).stdout, /^Usage: netvsc ctl DIR COMMAND/)
  const r = runCli(['ctl', scratchDir('noemu'), 'stats'])
  t.is(r.status, 1)
  t.regex(r.stderr, /^netvsc: control socket .*ctl.sock: no emulator is serving it/)
})

test('netvsc ctl round trip: stats, link, refused commands', async (t) => {
  const dir = path.join(scratchDir('ctl'), 'tree')
  const { child } = await startEmulate(dir, [], false)
  try {
    const s = ctl([dir, 'stats'])
    t.is(s.status, 0, s.stderr)
    t.is((s.reply.stats as { linkUp: boolean }).linkUp, true)
    const l = ctl([dir, 'link', 'down'])
    t.is(l.status, 0)
    t.deepEqual(l.reply, { ok: true, linkUp: false })
    t.is((ctl([dir, 'stats']).reply.stats as { linkUp: boolean }).linkUp, false)
    const v = ctl([dir, 'vf', 'offer'])
    t.is(v.status, 1, 'refused')
    t.is(v.reply.ok, false)
    t.regex(String(v.reply.error), /no VF configured/)
    const u = ctl([dir, 'nonsense'])
    t.is(u.status, 1)
    t.regex(String(u.reply.error), /unknown command 'nonsense'/)
  } finally {
    await stop(child)
  }
})

test('netvsc emulate --vf: the veth pair, and vf commands through netvsc ctl (root)', async (t) => {
  if (process.getuid?.() !== 0) {
    t.log('SKIP: not running as root (a veth pair needs CAP_NET_ADMIN)')
    t.pass()
    return
  }
  const dir = path.join(scratchDir('ctlvf'), 'tree')
  const { child } = await startEmulate(dir, ['--vf', 'ctlvf0', '--vf-delay', '250', '--vf-serial', '9', '--vf-mac', '02:15:5d:00:00:09'], true)
  try {
    const s = ctl([dir, 'vf', 'state'])
    t.is(s.status, 0, s.stderr)
    const vf = s.reply.vf as Record<string, unknown>
    t.like(vf, { iface: 'ctlvf0', hostIface: 'ctlvf0h', serial: 9, mac: '02:15:5d:00:00:09', present: true, offered: false, delayMs: 250 })
    const o = ctl([dir, 'vf', 'offer'])
    t.is(o.status, 1, 'no guest yet')
    t.regex(String(o.reply.error), /guest is not ready/)
    t.is(ctl([dir, 'vf', 'revoke']).status, 1)
    const m = ctl([dir, 'vf', 'mac', '02:15:5d:00:00:0a'])
    t.is(m.status, 0, JSON.stringify(m.reply))
    t.is((m.reply.vf as { mac: string }).mac, '02:15:5d:00:00:0a')
    const r = ctl([dir, 'vf', 'remove'])
    t.is(r.status, 0)
    t.is((r.reply.vf as { present: boolean }).present, false)
    t.is(ctl([dir, 'vf', 'remove']).status, 1, 'nothing to remove')
    const a = ctl([dir, 'vf', 'add'])
    t.is(a.status, 0)
    t.like(a.reply.vf as Record<string, unknown>, { present: true, adds: 1, removes: 1 })
    t.is(ctl([dir, 'vf', 'bogus']).status, 1)
  } finally {
    t.is(await stop(child), 0)
  }
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(what: string, ms: number, cond: () => boolean): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

test('netvsc ctl link flap and speed: a driver in this process sees the events and the new speed', async (t) => {
  const dir = path.join(scratchDir('ctllink'), 'tree')
  const { child } = await startEmulate(dir, [], false)
  const dev = await open(UUID, { root: dir, timeoutMs: 20_000 })
  try {
    const events: LinkEvent[] = []
    dev.on('link', (e) => events.push(e))
    const f = ctl([dir, 'link', 'flap', '300'])
    t.is(f.status, 0, f.stderr)
    t.deepEqual(f.reply, { ok: true, linkUp: false, upAfterMs: 300 })
    // `ctl` runs the CLI synchronously, blocking this event loop: on a loaded machine the whole flap can pass
    // meanwhile, and the driver then reports it as one event that coalesced the changes (up, coalesced > 0).
    const media = () => events.filter((e) => e.reason === 'media')
    await until('link down and up again', 15_000, () => media().length >= 2 || media().some((e) => e.up && e.coalesced > 0))
    const m = media()
    if (m.length === 1) t.true(m[0]!.up && m[0]!.coalesced > 0, JSON.stringify(m))
    else t.deepEqual(m.map((e) => e.up), [false, true])
    const sp = ctl([dir, 'speed', '40000'])
    t.is(sp.status, 0, sp.stderr)
    t.deepEqual(sp.reply, { ok: true, linkSpeedMbps: 40000 })
    await until('speed event', 10_000, () => events.some((e) => e.reason === 'speed'))
    t.is(events.find((e) => e.reason === 'speed')?.speedMbps, 40000)
    t.is((await dev.link()).speedMbps, 40000, 'an RNDIS link-speed query answers the new speed')
    for (const [args, why] of [
      [['speed', 'fast'], /bad speed/],
      [['speed', '0'], /outside 1\.\.400000/],
      [['link', 'flap', '-5'], /bad flap time/],
      [['gen', 'start'], /not the generator/],
    ] as const) {
      const r = ctl([dir, ...args])
      t.is(r.status, 1, args.join(' '))
      t.regex(String(r.reply.error), why)
    }
    const help = ctl([dir, 'help'])
    t.is(help.status, 0)
    const usage = (help.reply.commands as string[]).join('\n')
    for (const c of ['link up|down|flap', 'speed MBPS', 'gen start|stop|rate', 'vf offer', 'fault KIND', 'stats [rates]']) {
      t.true(usage.includes(c), `help lists ${c}:\n${usage}`)
    }
  } finally {
    dev.close()
    await stop(child)
  }
})

test('netvsc emulate --backend generator: VLAN, count, gen commands and rates through netvsc ctl; the stats file is rewritten while running', async (t) => {
  t.timeout(120_000)
  const base = scratchDir('ctlgen')
  const dir = path.join(base, 'tree')
  const statsFile = path.join(base, 'stats.json')
  const COUNT = 6000
  // Loaded before the generator starts: compiling it on the fly took seconds on a loaded CI machine, long enough for
  // the whole count to go out before the stats file was first read.
  const { request } = await import('../src/cli/ctl.js')
  const { child } = await startEmulate(dir, ['--backend', 'generator', '--gen-rate', '1000', '--gen-vlan', '7', '--gen-count', String(COUNT),
    '--gen-flows', '4', '--gen-size', 'imix', '--stats-json', statsFile], false)
  const dev = await open(UUID, { root: dir, timeoutMs: 20_000 })
  try {
    const q = dev.queue(0)
    const buf = new Uint8Array(32 * 1536)
    const lens = new Uint32Array(32)
    const meta = new Uint32Array(32 * META_WORDS)
    const tags = new Set<number | null>()
    const sizes = new Set<number>()
    let got = 0
    const poll = async (stopWhen: () => boolean, ms: number) => {
      const end = Date.now() + ms
      while (!stopWhen() && Date.now() < end) {
        const n = q.rxBurst(buf, lens, meta)
        for (let i = 0; i < n; i++) {
          tags.add(decodeRxMeta(meta, i).vlanTci ?? null)
          sizes.add(lens[i]!)
        }
        got += n
        if (n === 0) await new Promise((r) => setImmediate(r))
      }
    }
    const sock = path.join(dir, 'ctl.sock')
    const status = async () => (JSON.parse(await request(sock, { cmd: 'gen', args: ['status'] })) as { generator: Record<string, any> }).generator
    // Keep polling while the stats file is read twice, a second apart: it moves on.
    let first: any = null
    await poll(() => fs.existsSync(statsFile) && (first = JSON.parse(fs.readFileSync(statsFile, 'utf8'))) !== null, 10_000)
    t.truthy(first, 'the stats file appears within a second or two')
    // Rewritten each second with newer counts (the generator may start a moment after the first write on a
    // loaded machine: re-read for up to 10 s).
    let second: any = first
    await poll(() => {
      const s = JSON.parse(fs.readFileSync(statsFile, 'utf8'))
      if (s.statsFile.writes > first.statsFile.writes) second = s
      return second.backend.generated > first.backend.generated
    }, 10_000)
    t.true(second.statsFile.writes > first.statsFile.writes, `rewritten: ${first.statsFile.writes} -> ${second.statsFile.writes}`)
    t.true(second.backend.generated > first.backend.generated, `with newer counts: ${first.backend.generated} -> ${second.backend.generated}`)
    await poll(() => got >= COUNT, 20_000)
    await poll(() => false, 200)
    const g = await status()
    t.is(g.state, 'done', JSON.stringify(g))
    t.is(g.run.generated, COUNT)
    t.log(`--gen-rate 1000 --gen-count ${COUNT}: measured ${g.run.measuredPps?.toFixed(0)} pps over ${g.run.elapsedMs?.toFixed(0)} ms (burst ${g.burst})`)
    t.deepEqual([...tags], [7], 'every frame reached the driver with VLAN 7 in its metadata')
    t.deepEqual([...sizes].sort((a, b) => a - b), [60, 566, 1514], 'IMIX sizes')
    // Every generated frame delivered or dropped by a reason; the driver received (or missed) every delivered one.
    const s = ctl([dir, 'stats'])
    t.is(s.status, 0)
    const st = s.reply.stats as { totals: { hostToGuestFrames: number; drops: Record<string, number> }; rates: Record<string, any> }
    const drops = Object.values(st.totals.drops).reduce((a, b) => a + b, 0)
    const d = dev.stats()
    t.is(st.totals.hostToGuestFrames + drops, COUNT, JSON.stringify(st.totals))
    t.is(d.ipackets + d.imissed + d.ierrors, st.totals.hostToGuestFrames, 'driver received + dropped == host delivered')
    t.is(d.ipackets, got)
    t.true(typeof st.rates.hostToGuest.pps === 'number' && Array.isArray(st.rates.channels), JSON.stringify(st.rates))
    // Runtime changes through the CLI client.
    t.like(ctl([dir, 'gen', 'rate', '0']).reply, { ok: true })
    t.like(ctl([dir, 'gen', 'size', '128']).reply, { ok: true })
    const r = ctl([dir, 'gen', 'start'])
    t.is(r.status, 0)
    t.is((r.reply.generator as { ratePps: null }).ratePps, null, 'unlimited')
    const before = got
    await poll(() => got >= before + COUNT, 20_000)
    t.true(got >= before + COUNT, 'a second run of the count at full rate')
    t.true(sizes.has(128))
    const rates = ctl([dir, 'stats', 'rates'])
    t.is(rates.status, 0)
    t.log(`stats rates: ${JSON.stringify(rates.reply.rates)}`)
    t.like(ctl([dir, 'gen', 'stop']).reply, { ok: true, generator: { state: 'stopped' } })
  } finally {
    dev.close()
    await stop(child)
  }
  const last = JSON.parse(fs.readFileSync(statsFile, 'utf8'))
  t.is(last.backend.generated, 2 * COUNT, 'the file written at exit holds the final counts')
  t.deepEqual(fs.readdirSync(base).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left')
})

test('netvsc emulate --run: the control socket and the stats file are served while CMD runs (root)', async (t) => {
  t.timeout(60_000)
  const why = process.getuid?.() !== 0 ? 'not running as root (--run needs a private mount namespace)' : canRunGuests()
  if (why !== null) {
    t.log(`SKIP: ${why}`)
    t.pass()
    return
  }
  const base = scratchDir('ctlrun')
  const dir = path.join(base, 'tree')
  const statsFile = path.join(base, 'stats.json')
  // CMD runs until the test is done with it (a flag file), 60 s at most.
  const flag = path.join(base, 'done')
  const cmd = `for i in $(seq 600); do [ -e '${flag}' ] && exit 0; sleep 0.1; done; exit 3`
  const { child, out } = await startEmulate(dir, ['--stats-json', statsFile, '--run', '--', 'sh', '-c', cmd], false)
  const closed = new Promise<number | null>((r) => child.on('close', r))
  const s = ctl([dir, 'stats'])
  t.is(s.status, 0, `${s.stderr}\nemulate said: ${out()}`)
  t.is((s.reply.stats as { linkUp: boolean }).linkUp, true)
  t.like(ctl([dir, 'link', 'down']).reply, { ok: true, linkUp: false })
  await until('the stats file', 5000, () => fs.existsSync(statsFile))
  const a = JSON.parse(fs.readFileSync(statsFile, 'utf8'))
  await sleep(1300)
  const b = JSON.parse(fs.readFileSync(statsFile, 'utf8'))
  t.true(b.statsFile.writes > a.statsFile.writes, `rewritten during --run: ${a.statsFile.writes} -> ${b.statsFile.writes}`)
  t.false(b.linkUp, 'with the state changed through the socket')
  fs.writeFileSync(flag, '')
  t.is(await closed, 0)
  t.regex(out(), /emulator stopped; sh exited with 0/)
})
