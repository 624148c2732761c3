/**
 * `netvsc emulate`: runs the Hyper-V host emulator in this process on `--dir`. Without `--run` it serves until
 * SIGINT/SIGTERM; with `--run -- CMD …` it runs CMD against the tree (private mount namespace + uio interposer,
 * root only) and stops when CMD exits, exiting with CMD's status. The control socket and the `--stats-json` file
 * (rewritten every second and at exit) are served by native threads, so both work while CMD runs.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  Emulator,
  FAULT_KINDS,
  canRunGuests,
  runGuest,
  type EmulatorBackend,
  type EmulatorOptions,
  type FaultKind,
  type SlowHostOptions,
  type SlowRequest,
} from '../emulator.js'
import { NetvscError } from '../errors.js'
import { type Io, UsageError, intOption, nonEmpty, parse, untilSignal } from './common.js'
import { CommandError } from './bind.js'

export const EMULATE_HELP = `Usage: netvsc emulate --dir D [--mac M] [--max-queues N] [--backend B] [--pcap F]
                      [--stats-json F] [--uuid U] [--busy-poll]
                      [--gen-rate PPS] [--gen-size B[,B...]|imix] [--gen-flows N] [--gen-vlan ID]
                      [--gen-count N] [--gen-duration S] [--gen-proto P] [--gen-src A[-B]] [--gen-dst A[-B]]
                      [--gen-sport P[-Q]] [--gen-dport P[-Q]] [--gen-paused]
                      [--vf NAME [--vf-delay MS] [--vf-serial N] [--vf-mac M]]
                      [--fault KIND[,KIND] [--fault-seed N] [--fault-after MS]]
                      [--link-delay MS] [--filter-none drop|hold] [--no-mtu-check] [--ring-headroom B]
                      [--send-table hyperv|openvmm|off] [--no-monitor] [--slow-host MS[,KIND=MS...]]
                      [--run -- CMD ...]

Run an emulated Hyper-V synthetic NIC: writes the uio_hv_generic device tree under D and plays the host.
While it runs (with or without --run), D/ctl.sock takes runtime commands (netvsc ctl D help lists them):
link up|down|flap [MS], speed MBPS, gen start|stop|rate PPS|size B[,B...]|imix|status|reset,
vf offer|revoke|remove|add|switch-back|mac M|state, fault KIND[,KIND] [SEED], stats [rates].

Options:
  --dir D          Directory of the emulated tree (created)
  --mac M          MAC address (default 00:15:5d:00:00:01)
  --max-queues N   Channels offered, 1..64 (default 8)
  --backend B      sink | loopback | generator | tap (default sink)
  --tap NAME       TAP interface for --backend tap (default hvemu0)
  --pcap F         Mirror both directions into pcapng file F (direction flag per packet)
  --stats-json F   Rewrite the host's stats JSON (with rates) in F every second, atomically, and at exit
  --uuid U         Device instance uuid
  --busy-poll      Host threads spin instead of sleeping
  --gen-rate PPS   Generator frames per second (default 1000); 0 or 'unlimited' = as many as the host asks for
                   (what finds no guest buffer is a noRxBuffer drop); paced by a token bucket of 2 ms of traffic
                   (16..4096 frames): no catch-up after a pause
  --gen-size B,..  Generator frame sizes without FCS, 60..9018, used in turn (default 64); 'imix' = 7:4:1 of
                   64/570/1518 bytes on the wire (60/566/1514 here)
  --gen-flows N    Generator flows, 1..65536, spread by RSS (default 4)
  --gen-vlan ID    Tag generated frames with 802.1Q VLAN ID (0..4095)
  --gen-count N    Stop after N frames
  --gen-duration S Stop S seconds after the first frame (fractions allowed)
  --gen-proto P    tcp | udp | mixed (default mixed: even flows TCP, odd flows UDP)
  --gen-src A[-B]  Source IPv4 addresses; flow i takes A + i, wrapping after B (default 10.1.0.0-10.1.255.255)
  --gen-dst A[-B]  Destination IPv4 addresses (default 10.0.0.1)
  --gen-sport P[-Q] Source ports (default 10000-65535)
  --gen-dport P[-Q] Destination ports (default 80 for TCP flows, 5000 for UDP flows)
  --gen-paused     Start the generator stopped (netvsc ctl D gen start starts it)
  --vf NAME        Offer an accelerated-networking VF: a veth pair whose guest end NAME is the VF netdev and
                   whose host end NAMEh is the emulator's switch port (root); offered once the guest declared
                   SR-IOV at NVSP >= 4, after --vf-delay
  --vf-delay MS    Offer delay after the guest is ready (default 1000)
  --vf-serial N    VF serial in the association message (default 1)
  --vf-mac M       The VF's MAC (default: the synthetic MAC, as on Azure)
  --fault K[,K]    Inject faults once the guest is up (after --fault-after ms, default 1000): torn-index,
                   oversized-index, misaligned-index, len8-below-offset8, range-outside-recv-buf, duplicate-tid,
                   unknown-tid, withhold-completions, rndis-length-lie, ppi-loop, ppi-overrun, status-storm, flood,
                   revoke-vf, withhold-subchannels, vf-assoc-early, refuse-switch (the withhold-* and refuse-switch
                   switches are armed at start)
  --fault-seed N   Seed of the fault values (default 1; the same seed injects the same values)
  --run -- CMD     Run CMD against the tree (root: mount namespace + LD_PRELOAD interposer), stop when it exits

The generator starts once the guest's packet filter admits traffic. Every frame carries its flow's counter and a
timestamp, and the frames the guest sends back (a forwarding loop) are checked for loss, reordering, duplicates
and latency: stats backend.checker, or netvsc ctl D gen status.

Hyper-V behaviours (defaults as Hyper-V/OpenVMM's NetVSP):
  --link-delay MS  A quick link flap reaches the guest as two indications MS apart (default 5000; 0 = together)
  --filter-none M  Frames for a guest whose packet filter is NONE: drop (default, counted as filterNone) | hold
  --no-mtu-check   Pass frames longer than the MTU + 14 (default: dropped and counted both ways)
  --ring-headroom B  Bytes of the host->guest ring rx data leaves for completions and control (default 2048)
  --send-table T   Send indirection table after subchannels open: hyperv (default) | openvmm | off
  --no-monitor     Offer channels without a monitor id: the guest signals through the uio fd (DPDK >= 25.11)
  --slow-host S    Delay replies: MS for every request and/or KIND=MS for one (KIND: init, recv-buf, send-buf,
                   subchannel, switch-data-path, rndis-init, query, set, keepalive), e.g. 20,rndis-init=15000

DPDK 22.11's testpmd never marks netvsc queues started and so forwards nothing (fixed in DPDK 23.11, commit
0727d5d0e6): the interposer reads rte_version() and reports them started for DPDK 22.x and 23.03/23.07, not for
23.11 and later. HV_EMU_DPDK_QUEUE_STATE_FIX=1 (or =0) in CMD's environment forces that on (or off).
`

const GEN_OPTIONS = [
  'gen-rate', 'gen-size', 'gen-flows', 'gen-vlan', 'gen-count', 'gen-duration', 'gen-proto', 'gen-src', 'gen-dst',
  'gen-sport', 'gen-dport', 'gen-paused',
] as const

/** `new Emulator(options)`, a value the native side refuses (an address range, a port range) being bad usage. */
function startEmulator(options: EmulatorOptions): Emulator {
  try {
    return new Emulator(options)
  } catch (err) {
    if (err instanceof NetvscError && err.code === 'ERR_NETVSC_INVALID_ARG') {
      throw new UsageError(err.message.replace(/^emulator option generator\.(\w+)/, (_, k: string) => `option '--gen-${GEN_FLAG[k] ?? k}'`))
    }
    throw err
  }
}

const GEN_FLAG: Record<string, string> = { srcIp: 'src', dstIp: 'dst', srcPort: 'sport', dstPort: 'dport', proto: 'proto', vlan: 'vlan' }

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const MAC = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i

export async function runEmulate(argv: string[], io: Io): Promise<number> {
  const dash = argv.indexOf('--')
  const args = dash < 0 ? argv : argv.slice(0, dash)
  const cmd = dash < 0 ? [] : argv.slice(dash + 1)
  const { values, help } = parse(
    args,
    {
      dir: { type: 'string' },
      mac: { type: 'string' },
      'max-queues': { type: 'string' },
      backend: { type: 'string' },
      tap: { type: 'string' },
      pcap: { type: 'string' },
      'stats-json': { type: 'string' },
      uuid: { type: 'string' },
      'busy-poll': { type: 'boolean' },
      'gen-rate': { type: 'string' },
      'gen-size': { type: 'string' },
      'gen-flows': { type: 'string' },
      'gen-vlan': { type: 'string' },
      'gen-count': { type: 'string' },
      'gen-duration': { type: 'string' },
      'gen-proto': { type: 'string' },
      'gen-src': { type: 'string' },
      'gen-dst': { type: 'string' },
      'gen-sport': { type: 'string' },
      'gen-dport': { type: 'string' },
      'gen-paused': { type: 'boolean' },
      vf: { type: 'string' },
      fault: { type: 'string' },
      'fault-seed': { type: 'string' },
      'fault-after': { type: 'string' },
      'vf-delay': { type: 'string' },
      'vf-serial': { type: 'string' },
      'vf-mac': { type: 'string' },
      'link-delay': { type: 'string' },
      'filter-none': { type: 'string' },
      'no-mtu-check': { type: 'boolean' },
      'ring-headroom': { type: 'string' },
      'send-table': { type: 'string' },
      'no-monitor': { type: 'boolean' },
      'slow-host': { type: 'string' },
      run: { type: 'boolean' },
    },
    { min: 0, max: 0, names: '' },
  )
  if (help) return (io.out(EMULATE_HELP), 0)
  const dir = nonEmpty('dir', values.dir)
  if (dir === undefined) throw new UsageError("emulate needs '--dir D'")
  if (values.mac !== undefined && !MAC.test(values.mac)) throw new UsageError(`option '--mac' needs aa:bb:cc:dd:ee:ff, got '${values.mac}'`)
  const maxQueues = intOption('max-queues', values['max-queues'], 1, 64)
  const vf = nonEmpty('vf', values.vf)
  if (vf !== undefined && (vf.length > 15 || /[/\s]/.test(vf))) throw new UsageError(`option '--vf' needs an interface name of at most 15 bytes, got '${vf}'`)
  if (vf === undefined && (values['vf-delay'] ?? values['vf-serial'] ?? values['vf-mac']) !== undefined) {
    throw new UsageError("options '--vf-delay', '--vf-serial' and '--vf-mac' need '--vf NAME'")
  }
  const vfDelay = intOption('vf-delay', values['vf-delay'], 0, 3_600_000)
  const vfSerial = intOption('vf-serial', values['vf-serial'], 0, 0xffff_ffff)
  if (values['vf-mac'] !== undefined && !MAC.test(values['vf-mac'])) throw new UsageError(`option '--vf-mac' needs aa:bb:cc:dd:ee:ff, got '${values['vf-mac']}'`)
  const backend = values.backend ?? 'sink'
  if (!['sink', 'loopback', 'generator', 'tap'].includes(backend)) {
    throw new UsageError(`option '--backend' must be sink|loopback|generator|tap, got '${backend}'`)
  }
  const faults = values.fault === undefined ? [] : values.fault.split(',').map((k) => k.trim())
  for (const k of faults) {
    if (!(FAULT_KINDS as readonly string[]).includes(k)) throw new UsageError(`option '--fault' takes ${FAULT_KINDS.join(', ')}; got '${k.slice(0, 64)}'`)
  }
  const faultSeed = intOption('fault-seed', values['fault-seed'], 0, Number.MAX_SAFE_INTEGER) ?? 1
  const faultAfter = intOption('fault-after', values['fault-after'], 0, 3_600_000) ?? 1000
  if (faults.length === 0 && (values['fault-seed'] !== undefined || values['fault-after'] !== undefined)) {
    throw new UsageError("options '--fault-seed' and '--fault-after' need '--fault KIND'")
  }
  const genRate = values['gen-rate'] === 'unlimited' ? 0 : intOption('gen-rate', values['gen-rate'], 0, 1_000_000_000)
  const genFlows = intOption('gen-flows', values['gen-flows'], 1, 65_536)
  const genImix = values['gen-size']?.trim() === 'imix'
  const genSizes = genImix ? undefined : values['gen-size']?.split(',').map((t) => intOption('gen-size', t, 60, 9018) ?? 64)
  const genVlan = intOption('gen-vlan', values['gen-vlan'], 0, 4095)
  const genCount = intOption('gen-count', values['gen-count'], 1, Number.MAX_SAFE_INTEGER)
  const genDuration = values['gen-duration'] === undefined ? undefined : Number(values['gen-duration'])
  if (genDuration !== undefined && !(Number.isFinite(genDuration) && genDuration > 0 && genDuration <= 1e9)) {
    throw new UsageError(`option '--gen-duration' needs seconds > 0, got '${String(values['gen-duration']).slice(0, 32)}'`)
  }
  const genProto = values['gen-proto']
  if (genProto !== undefined && !['tcp', 'udp', 'mixed'].includes(genProto)) {
    throw new UsageError(`option '--gen-proto' must be tcp|udp|mixed, got '${genProto.slice(0, 32)}'`)
  }
  const genPattern = { srcIp: values['gen-src'], dstIp: values['gen-dst'], srcPort: values['gen-sport'], dstPort: values['gen-dport'] }
  const genGiven = GEN_OPTIONS.filter((o) => values[o] !== undefined)
  if (backend !== 'generator' && genGiven.length > 0) {
    throw new UsageError(`generator options (${genGiven.map((o) => `--${o}`).join(', ')}) need '--backend generator'`)
  }
  const hyperv = hypervOptions(values)
  if (values.run && cmd.length === 0) throw new UsageError("'--run' needs a command after '--'")
  if (!values.run && cmd.length > 0) throw new UsageError(`unexpected command '${cmd.join(' ')}' (use --run -- CMD)`)
  if (values.run) {
    const why = canRunGuests()
    if (why !== null) throw new CommandError(`cannot run guests: ${why}`)
  }
  if (values.uuid !== undefined && !UUID.test(values.uuid)) {
    throw new UsageError(`option '--uuid' needs a uuid like 8a4f4c5e-0d3e-4b1b-9c2a-1e2f3a4b5c6d, got '${values.uuid}'`)
  }
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new UsageError(`option '--dir': ${dir} exists and is not a directory`)
  fs.mkdirSync(dir, { recursive: true })
  const emu = startEmulator({
    dir,
    backend: backend as EmulatorBackend,
    ...(values.mac !== undefined && { mac: values.mac }),
    ...(maxQueues !== undefined && { maxQueues }),
    ...(values.tap !== undefined && { tapName: values.tap }),
    ...(values.pcap !== undefined && { pcap: values.pcap }),
    ...(values.uuid !== undefined && { uuid: values.uuid }),
    ...(values['busy-poll'] && { busyPoll: true }),
    ...(values['stats-json'] !== undefined && { statsJson: values['stats-json'] }),
    ...hyperv,
    ...(backend === 'generator' && {
      generator: {
        ratePps: genRate ?? 1000,
        flows: genFlows ?? 4,
        ...(genSizes !== undefined && { frameSizes: genSizes }),
        ...(genImix && { imix: true }),
        ...(genVlan !== undefined && { vlan: genVlan }),
        ...(genCount !== undefined && { limit: genCount }),
        ...(genDuration !== undefined && { durationMs: genDuration * 1000 }),
        ...(genProto !== undefined && { proto: genProto }),
        ...Object.fromEntries(Object.entries(genPattern).filter(([, v]) => v !== undefined)),
        ...(values['gen-paused'] && { paused: true }),
      },
    }),
    ...(vf !== undefined && {
      vf: {
        iface: vf,
        ...(vfDelay !== undefined && { delayMs: vfDelay }),
        ...(vfSerial !== undefined && { serial: vfSerial }),
        ...(values['vf-mac'] !== undefined && { mac: values['vf-mac'] }),
      },
    }),
  })
  const ctlPath = path.join(dir, 'ctl.sock')
  let status = 0
  try {
    let control = `control ${ctlPath}`
    try {
      emu.serveControl(ctlPath)
    } catch (err) {
      // A tree path too long for a Unix socket (108 bytes) still emulates; only `netvsc ctl` is unavailable.
      control = 'no control socket'
      io.err(`netvsc: warning: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`)
    }
    const vfNote = vf === undefined ? '' : `, VF ${vf}`
    io.out(`emulating ${emu.uuid} under ${emu.dir} (backend ${backend}${vfNote}; ${control})${values.run ? '' : '; SIGINT/SIGTERM stops'}\n`)
    const armed = faults.length > 0 ? armFaults(emu, faults as FaultKind[], faultSeed, faultAfter, io) : null
    try {
      if (values.run) status = runGuest(dir, cmd)
      else await untilSignal()
    } finally {
      if (armed !== null) clearInterval(armed)
    }
  } finally {
    // Stopping writes the stats file (if any) a last time, with the final counts.
    emu.stop()
  }
  io.out(`emulator stopped${values.run ? `; ${cmd[0]} exited with ${status}` : ''}\n`)
  return status
}

/**
 * Injects `faults`: the switches (withhold-*, refuse-switch) now, the rest once the guest has set up its receive
 * buffer and RNDIS, after `afterMs`. Returns the polling timer (cleared when the emulator stops).
 */
function armFaults(emu: Emulator, faults: FaultKind[], seed: number, afterMs: number, io: Io): NodeJS.Timeout {
  const armed = (k: string) => k.startsWith('withhold-') || k === 'refuse-switch'
  const now = faults.filter(armed)
  const later = faults.filter((k) => !armed(k))
  const report = (kinds: FaultKind[], s: number): void => {
    try {
      for (const r of emu.injectFault(kinds, s)) io.out(`fault ${r.kind} (seed ${r.seed}): ${r.detail}\n`)
    } catch (err) {
      io.err(`netvsc: fault injection failed: ${err instanceof Error ? err.message : String(err)}\n`)
    }
  }
  if (now.length > 0) report(now, seed)
  let upSince: number | null = null
  const timer = setInterval(() => {
    if (later.length === 0) return clearInterval(timer)
    if (upSince === null) {
      if (emu.stats().rndisInitialized) upSince = Date.now()
      return
    }
    if (Date.now() - upSince < afterMs) return
    clearInterval(timer)
    report(later, seed + now.length)
  }, 20)
  timer.unref()
  return timer
}

const SLOW_KINDS = ['init', 'recv-buf', 'send-buf', 'subchannel', 'switch-data-path', 'rndis-init', 'query', 'set', 'keepalive']

/** The Hyper-V behaviour switches as Emulator options (each checked here, with a message of our own). */
function hypervOptions(values: Record<string, string | boolean | undefined>): Partial<EmulatorOptions> {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined)
  const o: Partial<EmulatorOptions> = {}
  const delay = intOption('link-delay', str('link-delay'), 0, 600_000)
  if (delay !== undefined) o.linkDelayMs = delay
  const fn = str('filter-none')
  if (fn !== undefined) {
    if (fn !== 'drop' && fn !== 'hold') throw new UsageError(`option '--filter-none' must be drop|hold, got '${fn.slice(0, 64)}'`)
    o.filterNone = fn
  }
  if (values['no-mtu-check'] === true) o.mtuCheck = false
  const headroom = intOption('ring-headroom', str('ring-headroom'), 0, 1 << 20)
  if (headroom !== undefined) o.ringHeadroom = headroom
  const table = str('send-table')
  if (table !== undefined) {
    if (table !== 'hyperv' && table !== 'openvmm' && table !== 'off') {
      throw new UsageError(`option '--send-table' must be hyperv|openvmm|off, got '${table.slice(0, 64)}'`)
    }
    o.sendTable = table
  }
  if (values['no-monitor'] === true) o.monitored = false
  const slow = str('slow-host')
  if (slow !== undefined) o.slowHost = parseSlowHost(slow)
  return o
}

/** `MS[,KIND=MS...]` as SlowHostOptions (every MS 0..600000). */
function parseSlowHost(text: string): SlowHostOptions {
  const ms = (v: string): number => {
    const n = intOption('slow-host', v.trim(), 0, 600_000)
    if (n === undefined) throw new UsageError(`option '--slow-host' needs MS[,KIND=MS...], got '${text.slice(0, 64)}'`)
    return n
  }
  const out: SlowHostOptions = {}
  const each: Partial<Record<SlowRequest, number>> = {}
  for (const item of text.split(',')) {
    const eq = item.indexOf('=')
    if (eq < 0) {
      out.ms = ms(item)
      continue
    }
    const kind = item.slice(0, eq).trim()
    if (!SLOW_KINDS.includes(kind)) {
      throw new UsageError(`option '--slow-host': unknown request '${kind.slice(0, 64)}' (one of ${SLOW_KINDS.join(', ')})`)
    }
    each[kind as SlowRequest] = ms(item.slice(eq + 1))
  }
  if (Object.keys(each).length > 0) out.each = each
  return out
}
