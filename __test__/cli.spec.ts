/** Every `netvsc` command run as a child process: help, bad arguments (exit 2, one line), failures (exit 1), and
 * output checked against the fake sysfs tree or the emulator. */
import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { writeFakeTree, sampleDevices } from '../src/fake-sysfs.js'
import { readPcap } from '../src/pcap.js'
import { main } from '../src/cli.js'
import { emulator, runCli, scratchDir } from './helpers.js'

test('every command has --help', (t) => {
  for (const cmd of ['list', 'bind', 'unbind', 'info', 'emulate', 'demo', 'capture', 'stats', 'xstats']) {
    const r = runCli([cmd, '--help'])
    t.is(r.status, 0, `${cmd}: ${r.stderr}`)
    t.regex(r.stdout, /^Usage: netvsc /, cmd)
  }
})

test('bad arguments exit 2 with a one-line reason', (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['bind'], /missing the device uuid/],
    [['unbind', 'eth0'], /unbind needs a device uuid/],
    [['info'], /missing/],
    [['info', 'a', 'b'], /unexpected argument 'b'/],
    [['emulate'], /--dir/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'nope'], /--backend/],
    [['emulate', '--dir', '/tmp/x', '--mac', 'zz'], /--mac/],
    [['emulate', '--dir', '/tmp/x', '--max-queues', '99'], /--max-queues/],
    [['emulate', '--dir', '/tmp/x', '--run'], /needs a command/],
    [['emulate', '--dir', '/tmp/x', '--gen-rate', '0'], /need '--backend generator'/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-size', '64,20'], /--gen-size/],
    [['demo', '--size', '10'], /--size/],
    [['capture', 'x'], /--pcap/],
    [['stats', 'x', '--interval', 'soon'], /--interval/],
    [['metrics', '--listen', 'nohost'], /--listen must be HOST:PORT/],
  ]
  for (const [args, reason] of cases) {
    const r = runCli(args)
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
    t.is(r.stdout, '')
    t.regex(r.stderr, /^netvsc: [^\n]+\n$/, args.join(' '))
    t.regex(r.stderr, reason, args.join(' '))
  }
})

test('every util.parseArgs error and every bad value: status 2 and one line of our own (in process)', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    // Every util.parseArgs error, in our words.
    [['list', '--frobnicate'], /^netvsc: unknown option '--frobnicate'/],
    [['list', '-q'], /^netvsc: unknown option '-q'/],
    [['list', '--root'], /^netvsc: option '--root' needs a value\n$/],
    [['list', '--root', '--json'], /^netvsc: option '--root' needs a value, got the option '--json'/],
    [['list', '--json=yes'], /^netvsc: option '--json' takes no value/],
    [['list', 'extra'], /^netvsc: unexpected argument 'extra'/],
    [['--frobnicate'], /^netvsc: unknown option '--frobnicate'/],
    [['frobnicate'], /^netvsc: unknown command 'frobnicate'/],
    // Bad values.
    [['list', '--root', '/nonexistent/netvsc-root'], /option '--root': \/nonexistent\/netvsc-root does not exist/],
    [['info', 'x', '--root', '/nonexistent/netvsc-root'], /does not exist/],
    [['stats', 'x', '--root', '/nonexistent/netvsc-root'], /does not exist/],
    [['bind', 'x', '--root', '/nonexistent/netvsc-root'], /does not exist/],
    [['info', 'x', '--devargs', 'latency=soon'], /^netvsc: option '--devargs': key `latency` value `soon`/],
    [['stats', 'x', '--devargs', 'bogus=1'], /^netvsc: option '--devargs': /],
    [['emulate', '--dir', '/tmp/x', '--uuid', 'not-a-uuid'], /^netvsc: option '--uuid' needs a uuid/],
    [['emulate', '--dir', __filename], /^netvsc: option '--dir': .* exists and is not a directory/],
    // Generator options: checked here, or by the native side (address and port ranges) and reported as usage.
    [['emulate', '--dir', '/tmp/x', '--gen-vlan', '3'], /^netvsc: generator options \(--gen-vlan\) need '--backend generator'/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-src', '10.0.0.5-10.0.0.1'], /^netvsc: option '--gen-src': .*ends before it starts/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-dst', '10.0.0'], /^netvsc: option '--gen-dst': .*bad IPv4 address/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-dport', '80-70000'], /^netvsc: option '--gen-dport': .*bad port '70000'/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-vlan', '5000'], /^netvsc: option '--gen-vlan' must be 0\.\.4095/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-proto', 'sctp'], /^netvsc: option '--gen-proto' must be tcp\|udp\|mixed/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-duration', '0'], /^netvsc: option '--gen-duration' needs seconds > 0/],
    [['emulate', '--dir', '/tmp/x', '--backend', 'generator', '--gen-count', '0'], /^netvsc: option '--gen-count'/],
  ]
  for (const [args, reason] of cases) {
    let out = ''
    let err = ''
    const status = await main(args, { out: (s) => (out += s), err: (s) => (err += s), tty: false })
    t.is(status, 2, `${args.join(' ')}: ${err}`)
    t.is(out, '')
    t.regex(err, /^netvsc: [^\n]+\n$/, args.join(' '))
    t.regex(err, reason, args.join(' '))
    t.notRegex(err, /ambiguous|Unknown option|argument missing|does not take an argument|positional|EEXIST|ENOENT|\bat /, `raw Node text: ${err}`)
  }
})

test('--version prints the package version, without loading the addon', (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
  for (const flag of ['--version', '-V', 'version']) {
    const r = runCli([flag])
    t.is(r.status, 0, r.stderr)
    t.is(r.stdout, `${version}\n`)
  }
  const help = runCli(['--help'])
  t.regex(help.stdout, /netvsc --version/)
})

test('without a loadable addon, --help and --version work and a command says what to install in one line', (t) => {
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process')
  const env = { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: path.join(scratchDir('noaddon'), 'missing.node') }
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'src/cli.ts'), ...args], { encoding: 'utf8', env })
  t.is(run(['--help']).status, 0)
  t.is(run(['--version']).status, 0)
  const r = run(['list'])
  t.is(r.status, 1)
  t.regex(r.stderr, /^netvsc: the native addon for linux\/\w+ is missing \([^\n]*npm rebuild netvsc\n$/)
})

test('bind --dry-run prints the sysfs steps; bind writes them; safety check refuses the only route', (t) => {
  const root = writeFakeTree(scratchDir('bind'))
  const nic = sampleDevices()[1]! // bound to hv_netvsc as eth1
  const dry = runCli(['bind', nic.uuid, '--root', root, '--dry-run'])
  t.is(dry.status, 0, dry.stderr)
  const drivers = path.join(root, 'sys/bus/vmbus/drivers')
  t.deepEqual(dry.stdout.trimEnd().split('\n'), [
    `echo f8615163-df3e-46c5-913f-f2d2f965ed0e > ${drivers}/uio_hv_generic/new_id`,
    `echo ${nic.uuid} > ${drivers}/hv_netvsc/unbind`,
    `echo ${nic.uuid} > ${drivers}/uio_hv_generic/bind`,
  ])
  fs.mkdirSync(path.join(root, 'proc/net'), { recursive: true })
  fs.writeFileSync(path.join(root, 'proc/net/route'), 'Iface\tDestination\tGateway\nlo\t0000007F\t00000000\neth1\t00000000\t0100000A\n')
  const refused = runCli(['bind', 'eth1', '--root', root])
  t.is(refused.status, 1)
  t.regex(refused.stderr, /^netvsc: refusing to bind .*only default route.*--force/)
  const forced = runCli(['bind', 'eth1', '--root', root, '--force'])
  t.is(forced.status, 0, forced.stderr)
  t.is(fs.readFileSync(path.join(drivers, 'uio_hv_generic/bind'), 'utf8'), `${nic.uuid}\n`)
  t.is(fs.readFileSync(path.join(drivers, 'hv_netvsc/unbind'), 'utf8'), `${nic.uuid}\n`)
  const uio = sampleDevices()[0]!
  const un = runCli(['unbind', uio.uuid, '--root', root, '--dry-run'])
  t.is(un.status, 0, un.stderr)
  t.deepEqual(un.stdout.trimEnd().split('\n'), [`echo ${uio.uuid} > ${drivers}/uio_hv_generic/unbind`, `echo ${uio.uuid} > ${drivers}/hv_netvsc/bind`])
  const missing = runCli(['bind', 'eth9', '--root', root])
  t.is(missing.status, 1)
  t.regex(missing.stderr, /no vmbus device 'eth9'/)
})

test.serial('info, stats, xstats and capture against the emulator', (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'generator', generator: { ratePps: 2000, frameSizes: [128] } })
  try {
    const info = runCli(['info', emu.uuid, '--root', dir, '--json'])
    t.is(info.status, 0, info.stderr)
    const j = JSON.parse(info.stdout)
    t.is(j.device.uuid, emu.uuid)
    t.is(j.negotiated.mac, '00:15:5d:00:00:01')
    t.true(j.negotiated.link.up)
    const text = runCli(['info', emu.uuid, '--root', dir])
    t.regex(text.stdout, /^device +f9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a \(netvsc, relid 14\)$/m)
    t.regex(text.stdout, /^nvsp +0x60001/m)
    const stats = runCli(['stats', emu.uuid, '--root', dir, '--interval', '300', '--json'])
    t.is(stats.status, 0, stats.stderr)
    const s = JSON.parse(stats.stdout)
    t.true(s.ipackets > 0, 'generator frames were received')
    t.is(s.ibytes, s.ipackets * 128)
    const x = runCli(['xstats', emu.uuid, '--root', dir, '--interval', '200', '--json'])
    t.is(x.status, 0, x.stderr)
    const xs = JSON.parse(x.stdout)
    t.true(xs['rx_q0_good_packets'] > 0)
    t.is(xs['rx_q0_size_128_255_packets'], xs['rx_q0_good_packets'])
    const file = path.join(dir, 'cap.pcap')
    const cap = runCli(['capture', emu.uuid, '--root', dir, '--pcap', file, '--count', '5', '--timeout-ms', '10000'])
    t.is(cap.status, 0, cap.stderr)
    t.is(cap.stdout, `captured 5 frames to ${file}\n`)
    const frames = readPcap(file)
    t.is(frames.length, 5)
    t.true(frames.every((f) => f.length === 128 && f.subarray(0, 6).equals(Buffer.from([0, 0x15, 0x5d, 0, 0, 1]))))
    const missing = runCli(['stats', emu.uuid, '--root', dir, '--devargs', 'latency=abc'])
    t.is(missing.status, 2, 'bad devargs are bad usage')
    const bad = runCli(['stats', '00000000-0000-0000-0000-000000000000', '--root', dir])
    t.is(bad.status, 1)
    t.regex(bad.stderr, /^netvsc: ERR_NETVSC_DEVICE_NOT_FOUND: /)
  } finally {
    dispose()
  }
})

test('emulate serves until SIGTERM and writes the stats JSON; --run without root says why', async (t) => {
  const dir = scratchDir('emulate')
  const statsFile = path.join(dir, 'stats.json')
  const { spawn } = await import('node:child_process')
  const { repo } = await import('./helpers.js')
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'emulate', '--dir', path.join(dir, 'tree'), '--max-queues', '2', '--stats-json', statsFile], { cwd: repo })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner: ${out}`)), 20_000)
    child.stdout.on('data', () => /emulating/.test(out) && (clearTimeout(timer), resolve()))
  })
  const list = runCli(['list', '--root', path.join(dir, 'tree'), '--json'])
  t.is(JSON.parse(list.stdout)[0].driver, 'uio_hv_generic')
  child.kill('SIGTERM')
  const code = await new Promise((r) => child.on('close', r))
  t.is(code, 0)
  t.regex(out, /emulator stopped/)
  const stats = JSON.parse(fs.readFileSync(statsFile, 'utf8'))
  t.is(typeof stats.totals.guestToHostFrames, 'number')
  if (process.getuid?.() !== 0) {
    const r = runCli(['emulate', '--dir', path.join(dir, 'tree2'), '--run', '--', 'true'])
    t.is(r.status, 1)
    t.regex(r.stderr, /^netvsc: cannot run guests: /)
  }
})

test.serial('stats covers every queue the host offers', (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'generator', maxQueues: 4, generator: { ratePps: 2000, frameSizes: [128] } })
  try {
    const r = runCli(['stats', emu.uuid, '--root', dir, '--interval', '200', '--json'])
    t.is(r.status, 0, r.stderr)
    const s = JSON.parse(r.stdout) as { ipackets: number; queues: Array<{ queue: number; rxPackets: number }> }
    t.deepEqual(s.queues.map((q) => q.queue), [0, 1, 2, 3])
    t.is(s.queues.reduce((a, q) => a + q.rxPackets, 0), s.ipackets, 'the port total is the sum over all queues')
    const text = runCli(['stats', emu.uuid, '--root', dir, '--interval', '100'])
    t.is(text.status, 0, text.stderr)
    t.is(text.stdout.split('\n').filter((l) => /^[0-3] +\d/.test(l)).length, 4)
  } finally {
    dispose()
  }
})

test('demo piped: one progress line per step, and tx = rx + drops by reason (loopback overflow included)', (t) => {
  const r = runCli(['demo', '--seconds', '1', '--queues', '2'], { timeout: 60_000 })
  t.is(r.status, 0, r.stderr)
  const progress = r.stdout.split('\n').filter((l) => /^\[[#.]{30}\] +\d+%/.test(l))
  t.true(progress.length >= 8, `progress lines: ${progress.length}`)
  t.regex(progress.at(-1) ?? '', /100%/)
  const m = /^tx (\d+) = rx (\d+) \+ dropped (\d+) \((.*)\) \+ in flight (\d+)$/m.exec(r.stdout)
  t.truthy(m, r.stdout)
  const [, tx, rx, dropped, reasons, inFlight] = m!
  t.is(Number(tx), Number(rx) + Number(dropped) + Number(inFlight))
  t.regex(reasons!, /loopback overflow \d+/)
  const byReason = [...reasons!.matchAll(/ (\d+)(,|$)/g)].reduce((a, x) => a + Number(x[1]), 0)
  t.is(byReason, Number(dropped), 'the reasons add up to the drops')
  const j = JSON.parse(runCli(['demo', '--seconds', '1', '--json'], { timeout: 60_000 }).stdout)
  t.is(j.inFlight, 0, 'after the drain every frame is received or counted as dropped')
  t.is(j.sent, j.received + j.dropped)
  t.is(typeof j.drops.backendOverflow, 'number')
  t.is(j.host.totals?.drops?.backendOverflow ?? j.host.drops.backendOverflow, j.drops.backendOverflow)
})

test('emulate --backend generator --gen-rate 0 --gen-size: the driver in another process receives frames of that size; the host reports busy time', async (t) => {
  const dir = scratchDir('emulate-gen')
  const tree = path.join(dir, 'tree')
  const { spawn } = await import('node:child_process')
  const { repo } = await import('./helpers.js')
  const { open, META_WORDS } = await import('../src/index.js')
  const { request } = await import('../src/cli/ctl.js')
  const uuid = '6f1f3c1e-7d3a-4b8e-9a55-0c2d3e4f5a6b'
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'emulate', '--dir', tree, '--uuid', uuid, '--max-queues', '1',
    '--backend', 'generator', '--gen-rate', '0', '--gen-size', '200,300', '--gen-flows', '2'], { cwd: repo })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no banner: ${out}`)), 20_000)
      child.stdout.on('data', () => /emulating/.test(out) && (clearTimeout(timer), resolve()))
    })
    const dev = await open(uuid, { root: tree, timeoutMs: 20_000 })
    const q = dev.queue(0)
    const buf = new Uint8Array(32 * 1536)
    const lens = new Uint32Array(32)
    const meta = new Uint32Array(32 * META_WORDS)
    const seen = new Set<number>()
    let got = 0
    const end = Date.now() + 20_000
    while (got < 1000 && Date.now() < end) {
      const n = q.rxBurst(buf, lens, meta)
      for (let i = 0; i < n; i++) seen.add(lens[i]!)
      got += n
      if (n === 0) await new Promise((r) => setImmediate(r))
    }
    const stats = JSON.parse(await request(path.join(tree, 'ctl.sock'), { cmd: 'stats', args: [] })) as Record<string, unknown>
    dev.close()
    t.true(got >= 1000, `received ${got}`)
    t.deepEqual([...seen].sort(), [200, 300])
    const s = (stats.stats ?? stats) as { rxBusyNs: number; channels: Array<{ workerBusyNs: number }> }
    t.true(s.rxBusyNs > 0, JSON.stringify(s).slice(0, 300))
    t.is(typeof s.channels[0]?.workerBusyNs, 'number')
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.on('close', r))
  }
})

test('demo shows the link event, traffic and per-queue stats', (t) => {
  const r = runCli(['demo', '--seconds', '1', '--queues', '2'], { timeout: 60_000 })
  t.is(r.status, 0, r.stderr)
  t.regex(r.stdout, /link up event: 10000 Mbit\/s/)
  t.regex(r.stdout, /^QUEUE +TX PKTS +TX BYTES +RX PKTS/m)
  t.regex(r.stdout, /^0 +\d+/m)
  t.regex(r.stdout, /^1 +\d+/m)
  t.regex(r.stdout, /\d+\.\d{3} Mpps in/)
  const j = runCli(['demo', '--seconds', '1', '--json'], { timeout: 60_000 })
  const d = JSON.parse(j.stdout)
  t.is(d.host.guestToHostFrames, d.sent, 'the emulator counted every frame the driver sent')
  t.is(d.host.hostToGuestFrames >= d.received, true)
})
