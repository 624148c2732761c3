/** Debian's unmodified DPDK 22.11 `dpdk-testpmd` run exactly as a user would, under `netvsc emulate --run`, driven
 * through its `testpmd>` prompt on stdin; testpmd's counters are reconciled with the stats JSON the CLI writes when
 * testpmd exits (probe/negotiation, txonly on two queues, promiscuous/all-multicast filters). Needs root,
 * dpdk-testpmd, stdbuf and an interposer built with the DPDK queue-state workaround (on by default for 22.x, without
 * HV_EMU_DPDK_QUEUE_STATE_FIX); otherwise it logs `SKIP:`. */
import test from 'ava'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { canRunGuests } from '../src/emulator.js'
import { repo, runCli, scratchDir } from './helpers.js'

const MAC = '00:15:5d:2a:3b:4d'
const MAC_TEXT = MAC.toUpperCase()
const QUEUES = 2
const TXPKT = 64
const PROMPT = 'testpmd> '
// NDIS packet-filter bits (protocol.md).
const F_DIRECTED = 0x1
const F_ALL_MULTICAST = 0x4
const F_BROADCAST = 0x8
const F_PROMISCUOUS = 0x20

function which(prog: string): string | null {
  for (const d of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(d, prog)
    try {
      if (fs.statSync(p).isFile()) return p
    } catch {
      // not in this directory
    }
  }
  return null
}

/** True when the loaded addon embeds an interposer with the `rte_eth_{rx,tx}_queue_info_get` wrappers (built
 * against the DPDK headers); without them testpmd 22.11 disables every stream (dpdk-interop.md defect 1). */
function interposerHasQueueStateFix(): boolean {
  const addons = fs.readdirSync(repo).filter((f) => f.endsWith('.node'))
  return addons.some((f) => fs.readFileSync(path.join(repo, f)).includes('rte_eth_tx_queue_info_get'))
}

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root (emulate --run needs a private mount namespace)'
  const why = canRunGuests()
  if (why !== null) return `cannot run guests: ${why}`
  if (which('dpdk-testpmd') === null) return 'dpdk-testpmd is not installed'
  if (which('stdbuf') === null) return 'stdbuf (coreutils) is not installed'
  if (!interposerHasQueueStateFix()) return 'the interposer was built without DPDK headers (no queue-state workaround)'
  return null
}

/** The CLI (and testpmd under it) in its own process group, with stdout+stderr collected into one transcript. */
class Session {
  readonly child: ChildProcessWithoutNullStreams
  out = ''
  private seen = 0
  readonly closed: Promise<number | null>

  constructor(args: string[]) {
    // The 22.11 PMD never reports its queues STARTED; the interposer sees 22.11 in rte_version() and reports them
    // started by default (dpdk-interop.md defect 1): the override variable is removed so that this is what is tested.
    const env = { ...process.env }
    delete env['HV_EMU_DPDK_QUEUE_STATE_FIX']
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), ...args], { cwd: repo, env, detached: true })
    this.child.stdout.on('data', (d: Buffer) => (this.out += d.toString()))
    this.child.stderr.on('data', (d: Buffer) => (this.out += d.toString()))
    this.closed = new Promise((resolve) => this.child.on('close', (code) => resolve(code)))
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  tail(n = 40): string {
    return this.out.split('\n').slice(-n).join('\n')
  }

  /** Text up to the next prompt after what was already returned. */
  async prompt(ms: number): Promise<string> {
    const until = Date.now() + ms
    for (;;) {
      const i = this.out.indexOf(PROMPT, this.seen)
      if (i >= 0) {
        const text = this.out.slice(this.seen, i)
        this.seen = i + PROMPT.length
        return text
      }
      if (!this.running) throw new Error(`testpmd/CLI exited while a prompt was awaited:\n${this.tail()}`)
      if (Date.now() > until) throw new Error(`no testpmd prompt within ${ms} ms:\n${this.tail()}`)
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  async cmd(line: string): Promise<string> {
    this.child.stdin.write(`${line}\n`)
    return this.prompt(20_000)
  }

  /** Kill the whole group (node, stdbuf/testpmd) if anything is still alive. */
  async kill(): Promise<void> {
    if (this.running && this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
      await this.closed
    }
  }
}

/** The number after `label` in `text`. */
function field(text: string, label: string): number {
  const m = new RegExp(`${label}:\\s+(\\d+)`).exec(text)
  if (m === null) throw new Error(`no ${label} in:\n${text}`)
  return Number(m[1])
}

function xstats(text: string): Map<string, number> {
  const m = new Map<string, number>()
  for (const line of text.split('\n')) {
    const r = /^\s*([A-Za-z0-9_ ]+):\s+(\d+)\s*$/.exec(line)
    if (r !== null) m.set(r[1]!.trim(), Number(r[2]))
  }
  return m
}

test('dpdk-testpmd under `netvsc emulate --run`: negotiation, txonly on 2 queues and filters match the stats JSON', async (t) => {
  t.timeout(90_000)
  const why = skipReason()
  if (why !== null) {
    t.log(`SKIP: ${why}`)
    t.pass()
    return
  }
  const dir = scratchDir('dpdk-cli')
  const prefix = path.basename(dir)
  const statsFile = path.join(dir, 'stats.json')
  const s = new Session([
    'emulate', '--dir', path.join(dir, 'tree'), '--mac', MAC, '--max-queues', String(QUEUES), '--backend', 'sink',
    '--stats-json', statsFile,
    '--run', '--', 'stdbuf', '-oL', 'dpdk-testpmd', '--no-huge', '-m', '1024', '--no-pci', '-l', '0-1', '--file-prefix', prefix,
    '--', '-i', '--total-num-mbufs=16384', `--rxq=${QUEUES}`, `--txq=${QUEUES}`,
  ])
  try {
    // (1) probe: the PMD found the emulated NIC with its MAC, link up, the queue limit it offers.
    const boot = await s.prompt(45_000)
    t.regex(boot, /^emulating [0-9a-f-]{36} under /m, 'the CLI banner precedes the guest')
    t.true(boot.includes(`Port 0: ${MAC_TEXT}`), boot)
    t.false(boot.includes('invalid comp'), 'no RNDIS answer rejected')
    const info = await s.cmd('show port info 0')
    for (const needle of [`MAC address: ${MAC_TEXT}`, 'Driver name: net_netvsc', 'Link status: up', `Max possible RX queues: ${QUEUES}`, `Max possible TX queues: ${QUEUES}`]) {
      t.true(info.includes(needle), `${needle} in:\n${info}`)
    }

    // (2) txonly, 64-byte frames on both queues.
    await s.cmd('set fwd txonly')
    await s.cmd(`set txpkts ${TXPKT}`)
    const started = await s.cmd('start')
    t.notRegex(started, /disabled/i, 'no forwarding stream disabled (queue-state workaround active)')
    await new Promise((r) => setTimeout(r, 800))
    await s.cmd('stop')
    // dpdk-interop.md defect 2: 22.11 counts TX on completion; reclaim completions on every queue until the count
    // has not moved for two rounds (the host may still be draining the ring when `stop` returns).
    let last = -1
    let stable = 0
    let port = ''
    for (let round = 0; round < 40 && stable < 2; round++) {
      await new Promise((r) => setTimeout(r, 150))
      for (let q = 0; q < QUEUES; q++) {
        const c = await s.cmd(`port cleanup 0 txq ${q} 0`)
        t.true(c.includes(`Cleanup port 0 Tx queue ${q}`), c)
      }
      port = await s.cmd('show port stats 0')
      const tx = field(port, 'TX-packets')
      stable = tx === last ? stable + 1 : 0
      last = tx
    }
    const txPackets = field(port, 'TX-packets')
    const txBytes = field(port, 'TX-bytes')
    t.is(field(port, 'TX-errors'), 0)
    const x = xstats(await s.cmd('show port xstats 0'))
    t.is(stable, 2, 'testpmd TX-packets stopped moving after stop')
    const perQueue = Array.from({ length: QUEUES }, (_, q) => ({ packets: x.get(`tx_q${q}_good_packets`), bytes: x.get(`tx_q${q}_good_bytes`) }))

    // Mid-run, through `netvsc ctl DIR stats` (testpmd still running, forwarding stopped): the host's per-queue
    // counts already equal testpmd's.
    const live = runCli(['ctl', path.join(dir, 'tree'), 'stats'])
    t.is(live.status, 0, live.stderr)
    const ls = (JSON.parse(live.stdout) as { stats: { channels: Array<{ subchannelId: number; guestToHostFrames: number }>; rates: unknown } }).stats
    for (let q = 0; q < QUEUES; q++) {
      t.is(ls.channels.find((c) => c.subchannelId === q)?.guestToHostFrames, perQueue[q]!.packets, `mid-run: queue ${q} host == testpmd`)
    }
    t.truthy(ls.rates, 'the live stats carry rates')
    t.log(`mid-run via netvsc ctl: host per queue ${ls.channels.map((c) => c.guestToHostFrames).join(' + ')} = testpmd ${perQueue.map((q) => q.packets).join(' + ')}`)

    // (3) filters: testpmd starts promiscuous; switch it off, then all-multicast on.
    await s.cmd('set promisc all off')
    await s.cmd('set allmulti all on')
    const after = await s.cmd('show port info 0')
    t.true(after.includes('Promiscuous mode: disabled') && after.includes('Allmulticast mode: enabled'), after)

    s.child.stdin.write('quit\n')
    const deadline = setTimeout(() => void s.kill(), 20_000)
    const code = await s.closed
    clearTimeout(deadline)
    t.is(code, 0, s.tail())
    t.regex(s.out, /emulator stopped; stdbuf exited with 0/)

    const j = JSON.parse(fs.readFileSync(statsFile, 'utf8'))
    // (1) host side of the probe.
    t.is(j.nvspVersion, 0x60001, 'NVSP 6.1')
    t.deepEqual([j.ndisVersion?.major, j.ndisVersion?.minor], [6, 30], 'NDIS 6.30')
    t.true(j.rndisInitialized)
    t.deepEqual(j.protocolErrors, {})
    for (const oid of ['0x01010101', '0x00010203', '0xfc01020d', '0x00010114', '0x00010107']) {
      t.true(j.oids.queried.includes(oid), `queried ${oid}: ${JSON.stringify(j.oids)}`)
    }
    for (const oid of ['0xfc01020c', '0x0001010e', '0x00010204']) {
      t.true(j.oids.set.includes(oid), `set ${oid}: ${JSON.stringify(j.oids)}`)
    }
    t.log(`probe: NVSP 0x${j.nvspVersion.toString(16)}, NDIS ${j.ndisVersion.major}.${j.ndisVersion.minor}, OIDs queried ${[...new Set(j.oids.queried)].join(' ')}, set ${[...new Set(j.oids.set)].join(' ')}`)
    t.is(j.subchannels, QUEUES - 1)
    t.is(j.channels.length, QUEUES)
    t.true(j.rss.enabled, 'RSS parameters set for 2 queues')
    // 0 at attach, directed|all-multicast|broadcast at start, testpmd's default promiscuous mode, then (3)'s
    // `promisc off` and `allmulti on`, and 0 again when quit stops the port.
    const d = F_DIRECTED | F_BROADCAST
    t.deepEqual(j.packetFilters, [0, d | F_ALL_MULTICAST, d, d, F_PROMISCUOUS, d, d | F_ALL_MULTICAST, 0])
    t.is(j.packetFilter, 0)

    // (2) host side of txonly: every frame testpmd counted reached the sink, at 64 bytes, on the queue it says.
    const frames: number = j.backend.frames
    const bytes: number = j.backend.bytes
    t.log(`txonly ${TXPKT} B: testpmd TX-packets ${txPackets} (${perQueue.map((q) => q.packets).join(' + ')}) = sink ${frames} (${j.channels.map((c: { guestToHostFrames: number }) => c.guestToHostFrames).join(' + ')})`)
    t.true(frames > 1000, `enough traffic: ${frames}`)
    t.is(txPackets, frames, 'testpmd TX-packets == emulator sink frames')
    t.is(txBytes, bytes, 'testpmd TX-bytes == sink bytes')
    t.is(bytes, frames * TXPKT, 'every frame is 64 bytes')
    t.is(j.totals.drops.txMalformed, 0)
    for (let q = 0; q < QUEUES; q++) {
      const c = j.channels.find((ch: { subchannelId: number }) => ch.subchannelId === q)
      t.truthy(c, `channel for queue ${q}`)
      t.true((perQueue[q]!.packets ?? 0) > 0, `queue ${q} carried traffic`)
      t.is(perQueue[q]!.packets, c.guestToHostFrames, `tx_q${q}_good_packets == host channel ${q}`)
      t.is(perQueue[q]!.bytes, c.guestToHostBytes, `tx_q${q}_good_bytes == host channel ${q}`)
    }
  } finally {
    await s.kill()
    fs.rmSync(`/var/run/dpdk/${prefix}`, { recursive: true, force: true })
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
