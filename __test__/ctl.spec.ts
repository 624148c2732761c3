/** `netvsc ctl` against a running `netvsc emulate` (child processes): the control socket's round trip without a VF
 * for everyone, and (root only, in a private network namespace via `unshare --net`, else a visible SKIP) the VF
 * commands on `--vf`. */
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import * as path from 'node:path'
import { repo, runCli, scratchDir } from './helpers.js'

async function startEmulate(dir: string, extra: string[], netns: boolean): Promise<{ child: ChildProcess; out: () => string }> {
  const cli = [process.execPath, '--import', 'tsx', path.join(repo, 'src/cli.ts'), 'emulate', '--dir', dir, '--max-queues', '1', ...extra]
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
