/**
 * The Hyper-V host emulator (crates/hv-emu) in this process: it writes an emulated uio_hv_generic device tree under
 * `dir` and plays the host side of VMBus/NVSP/RNDIS, so `open(emu.uuid, { root: emu.dir })` works without Hyper-V.
 */
import * as native from '../binding.js'
import { NetvscError, fromNative } from './errors.js'

export type EmulatorBackend = 'sink' | 'loopback' | 'generator' | 'tap' | 'capture'

export interface EmulatorOptions {
  /** Directory of the emulated tree (created; a tmpfs such as /dev/shm is fastest). */
  dir: string
  uuid?: string
  /** `aa:bb:cc:dd:ee:ff` (default 00:15:5d:00:00:01). */
  mac?: string
  mtu?: number
  /** Channels the host offers (default 8). */
  maxQueues?: number
  /** Where transmitted frames go / received frames come from (default 'sink'). */
  backend?: EmulatorBackend
  /** TAP interface for backend 'tap' (root only). */
  tapName?: string
  /** Receive traffic for backend 'generator'. */
  generator?: native.GeneratorOptions
  /** Mirror both directions into this pcap file. */
  pcap?: string
  /** Host workers spin instead of sleeping (lowest latency, one core busy). */
  busyPoll?: boolean
  /** The host reads the guest's packets and answers none (bring-up timeout and abort tests). */
  silent?: boolean
  linkSpeedMbps?: number
  /** Offer an accelerated-networking VF: a veth pair whose guest end `iface` is the VF netdev (root). */
  vf?: EmulatorVfOptions
  /** Rewrite this file with the stats JSON every second (written beside it, then renamed over it) and at `stop()`;
   * written by a native thread, so also while `runGuest` blocks. */
  statsJson?: string
  // Hyper-V behaviours (issue 12); each defaults to what Hyper-V (OpenVMM's NetVSP) does.
  /** The two halves of a quick link flap (`notifyLink([false, true])`) this many ms apart (default 5000; 0 =
   * together). Separate `setLink` changes are each told at once. */
  linkDelayMs?: number
  /** Frames for a guest whose packet filter is NONE: `'drop'` (default; counted as `drops.filterNone`) or `'hold'`
   * (left in the backend until a filter is set). The generator is never polled while the filter is NONE. */
  filterNone?: 'drop' | 'hold'
  /** Drop and count frames longer than the MTU + 14 in both directions (default true). */
  mtuCheck?: boolean
  /** Bytes of the host→guest ring rx data leaves free for completions and control messages (default 2048). */
  ringHeadroom?: number
  /** The send indirection table once subchannels are open: `'hyperv'` (default: NVSP ≤ 6 in the Windows layout,
   * 6.1 in the fixed one), `'openvmm'` (always fixed), `'off'`. */
  sendTable?: 'hyperv' | 'openvmm' | 'off'
  /** Offer channels with a monitor id (default true); false: no `monitor_id` in sysfs, the guest signals the host
   * through the uio fd (DPDK ≥ 25.11 and this driver can; 22.11 cannot). */
  monitored?: boolean
  /** A slow host: reply delays in ms, for every request (`ms`) and per request (`each`), e.g.
   * `{ ms: 20, each: { 'rndis-init': 15000 } }`. */
  slowHost?: SlowHostOptions
}

/** Requests whose replies a slow host delays. */
export type SlowRequest =
  | 'init'
  | 'recv-buf'
  | 'send-buf'
  | 'subchannel'
  | 'switch-data-path'
  | 'rndis-init'
  | 'query'
  | 'set'
  | 'keepalive'

export interface SlowHostOptions {
  /** Delay of every reply not named in `each`, ms. */
  ms?: number
  /** Delays of particular replies, ms. */
  each?: Partial<Record<SlowRequest, number>>
}

/** The `--slow-host` / native form of `o`: `MS[,KIND=MS...]`. */
export function slowHostSpec(o: SlowHostOptions): string {
  const items = [String(o.ms ?? 0)]
  for (const [k, v] of Object.entries(o.each ?? {})) items.push(`${k}=${String(v)}`)
  return items.join(',')
}

export interface EmulatorVfOptions {
  /** Guest end (VF netdev) name, ≤ 15 bytes; the host end (switch port) is `<iface>h`. */
  iface: string
  /** Offer delay after the guest is ready, ms (default 1000, as Hyper-V). */
  delayMs?: number
  /** VF serial (default 1). */
  serial?: number
  /** The VF's MAC (default: the synthetic MAC). */
  mac?: string
  /** Network-namespace file for the guest end (default: this namespace). */
  netns?: string
}

/** The VF as the emulated host sees it (`vfState()`, and `vf` in `stats()`). */
export interface EmulatorVfState {
  iface: string
  hostIface: string
  serial: number
  mac: string
  present: boolean
  offered: boolean
  datapathVf: boolean
  datapath: 'vf' | 'synthetic'
  /** Why not offered (`nvspBelow4`, `noSriovCapability`, `guestNotReady`, `waitingDelay`, `revoked`, `removed`). */
  state: string | null
  delayMs: number
  offers: number
  revokes: number
  notOfferedBelowV4: number
  notOfferedNoSriov: number
  switches: { toVf: number; toSynthetic: number; ignored: number; badValue: number; hostSwitchBack: number }
  removes: number
  adds: number
  vfHostToGuestFrames: number
  vfHostToGuestBytes: number
  vfGuestToHostFrames: number
  vfGuestToHostBytes: number
  drops: { vfGone: number; ringFull: number; kernelRxDropped: number }
  portMode: string | null
}

const BACKENDS: readonly string[] = ['sink', 'loopback', 'generator', 'tap', 'capture']

export class Emulator {
  readonly #emu: native.NativeEmulator
  readonly uuid: string
  readonly dir: string

  constructor(options: EmulatorOptions) {
    if (options === null || typeof options !== 'object' || typeof options.dir !== 'string' || options.dir === '') {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'Emulator needs options.dir (a directory path)')
    }
    if (options.backend !== undefined && !BACKENDS.includes(options.backend)) {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', `unknown backend '${String(options.backend)}' (${BACKENDS.join('|')})`)
    }
    const { slowHost, ...rest } = options
    try {
      this.#emu = native.NativeEmulator.start({ ...rest, ...(slowHost !== undefined && { slowHost: slowHostSpec(slowHost) }) })
    } catch (err) {
      throw fromNative(err)
    }
    this.uuid = this.#emu.uuid
    this.dir = this.#emu.dir
  }

  static start(options: EmulatorOptions): Emulator {
    return new Emulator(options)
  }

  get running(): boolean {
    return this.#emu.isRunning
  }

  /**
   * Injects faults on the primary channel (`kinds`: one name or several, e.g. `['torn-index', 'flood']`; see
   * `FAULT_KINDS`), kind i drawing its values from `seed + i` (default 1) so a run reproduces. Returns what each did.
   */
  injectFault(kinds: FaultKind | FaultKind[], seed = 1): FaultReport[] {
    const list = Array.isArray(kinds) ? kinds.join(',') : kinds
    return JSON.parse(this.#call(() => this.#emu.injectFault(list, seed))) as FaultReport[]
  }

  /** Guest sends the `withhold-completions` fault left uncompleted. */
  get completionsWithheld(): number {
    return this.#call(() => this.#emu.completionsWithheld)
  }

  /** Sets the host's link; the guest is told of a change at once (setting the current state tells nothing). */
  setLink(up: boolean): void {
    this.#call(() => this.#emu.setLink(up))
  }

  /** Link notifications arriving together, as a backend reports a quick flap (`[false, true]`): they coalesce;
   * if the result is what the guest was last told, it hears the opposite now and the result `linkDelayMs` later. */
  notifyLink(states: boolean[]): void {
    this.#call(() => this.#emu.notifyLink(states))
  }

  /** Link speed in Mbit/s: what RNDIS link-speed queries answer from now on, announced with LINK_SPEED_CHANGE. */
  setLinkSpeed(mbps: number): void {
    this.#call(() => this.#emu.setLinkSpeed(mbps))
  }

  /** Link down now and up again after `ms` (1..600000), unless another link change comes first. */
  linkFlap(ms = 100): void {
    this.#call(() => this.#emu.linkFlap(ms))
  }

  /** Backend 'generator': starts a new run (count and duration count from its first frame). */
  genStart(): void {
    this.#call(() => this.#emu.genStart())
  }

  /** Backend 'generator': stops generating (frames coming back are still checked). */
  genStop(): void {
    this.#call(() => this.#emu.genStop())
  }

  /** Backend 'generator': frames per second from now on; 0 = as many as the host asks for (unlimited). */
  genRate(pps: number): void {
    this.#call(() => this.#emu.genRate(pps))
  }

  /** Backend 'generator': frame sizes (60..9018, used in turn) or `'imix'` (7:4:1 of 60/566/1514 bytes). */
  genSizes(sizes: number[] | 'imix'): void {
    this.#call(() => this.#emu.genSizes(sizes === 'imix' ? 'imix' : sizes.join(',')))
  }

  /** Backend 'generator': settings, counters, the current run and the checker's loss/reorder/latency results. */
  generatorStats(): GeneratorStats {
    return JSON.parse(this.#call(() => this.#emu.generatorStatsJson())) as GeneratorStats
  }

  /**
   * Runs a control-socket command here, as `netvsc ctl DIR cmd args…` does over the socket (`link flap 200`,
   * `speed 40000`, `gen rate 5000`, `stats rates`, `help`, …): the reply object, `ok: false` with `error` when
   * refused.
   */
  control(cmd: string, ...args: string[]): ControlReply {
    return JSON.parse(this.#call(() => this.#emu.control(cmd, args))) as ControlReply
  }

  /** Offers (or withdraws) a VF; false if the negotiated protocol cannot carry it. */
  offerVf(allocated: boolean, serial: number): boolean {
    return this.#call(() => this.#emu.sendVfAssociation(allocated, serial))
  }

  /** Offers the VF now (SEND_VF_ASSOCIATION allocated=1); refused before the guest is ready, below NVSP 4, without
   * its SR-IOV bit, or while removed. */
  vfOffer(): void {
    this.#call(() => this.#emu.vfOffer())
  }

  /** Withdraws the VF (allocated=0); the host's rx goes synthetic at once. */
  vfRevoke(): void {
    this.#call(() => this.#emu.vfRevoke())
  }

  /** Hot-removes the VF (deletes the veth pair). */
  vfRemove(): void {
    this.#call(() => this.#emu.vfRemove())
  }

  /** Hot-adds the VF again; it is offered after the delay. */
  vfAdd(): void {
    this.#call(() => this.#emu.vfAdd())
  }

  /** Host-initiated switch to synthetic (NVSP SWITCH_DATA_PATH {0} to the guest). */
  vfSwitchBack(): void {
    this.#call(() => this.#emu.vfSwitchBack())
  }

  /** Gives the VF another MAC (`aa:bb:cc:dd:ee:ff`). */
  vfSetMac(mac: string): void {
    this.#call(() => this.#emu.vfSetMac(mac))
  }

  /** The VF's state and counters; null without a VF. */
  vfState(): EmulatorVfState | null {
    const json = this.#call(() => this.#emu.vfStateJson())
    return json === null || json === undefined ? null : (JSON.parse(json) as EmulatorVfState)
  }

  /** Serves the runtime control socket at `path` (JSON lines: `{"cmd":"vf","args":["offer"]}`) until `stop()`;
   * it is served by a native thread, so it answers while a guest runs under `runGuest`. */
  serveControl(path: string): void {
    this.#call(() => this.#emu.serveControl(path))
  }

  /** The host's view: negotiated state and per-channel counters. */
  stats(): EmulatorStats {
    return JSON.parse(this.statsJson()) as EmulatorStats
  }

  statsJson(): string {
    return this.#call(() => this.#emu.statsJson())
  }

  /** Backend 'capture': every frame the guest sent so far. */
  captured(): Buffer[] {
    return this.#call(() => this.#emu.captured())
  }

  /** Backend 'capture': delivers `frame` to the guest. */
  inject(frame: Uint8Array): void {
    this.#call(() => this.#emu.inject(frame))
  }

  /** Stops the host threads and flushes the pcap (idempotent); the tree stays on disk. */
  stop(): void {
    this.#emu.stop()
  }

  [Symbol.dispose](): void {
    this.stop()
  }

  #call<T>(fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      throw fromNative(err)
    }
  }
}

/** Faults the emulator can inject (`Emulator.injectFault`, `netvsc emulate --fault`, `netvsc ctl DIR fault`). */
export const FAULT_KINDS = [
  'torn-index',
  'oversized-index',
  'misaligned-index',
  'len8-below-offset8',
  'range-outside-recv-buf',
  'duplicate-tid',
  'unknown-tid',
  'withhold-completions',
  'rndis-length-lie',
  'ppi-loop',
  'ppi-overrun',
  'status-storm',
  'flood',
  'revoke-vf',
  'withhold-subchannels',
  'vf-assoc-early',
  'refuse-switch',
  'clear',
] as const
export type FaultKind = (typeof FAULT_KINDS)[number]

/** What one injected fault did. */
export interface FaultReport {
  kind: FaultKind
  seed: number
  written: number
  detail: string
}

/** The parts of the emulator's stats document the package relies on (the JSON has more). */
export interface EmulatorStats {
  nvspVersion: number | null
  rndisInitialized: boolean
  packetFilter: number
  /** The newest 64 packet filters the guest set, oldest first (the host keeps no more). */
  packetFilters: number[]
  /** Packet filter sets in all. */
  packetFilterChanges: number
  /** NDIS_CONFIG as the guest sent it (`mtu` includes the 14-byte header). */
  ndisConfig: { mtu: number; capabilities: number } | null
  linkUp: boolean
  linkSpeed: number
  subchannels: number
  /** NVSP/RNDIS replies a slow host (`slowHost`) held back. */
  delayedReplies: number
  totals: {
    guestToHostFrames: number
    guestToHostBytes: number
    hostToGuestFrames: number
    hostToGuestBytes: number
    /**
     * Of `hostToGuestFrames`, those the guest still held (unread in its ring, or not yet completed) when its
     * session ended — a close or a recovery revokes the buffer and re-initialises: they went with the old rings.
     */
    hostToGuestAbandoned: number
    drops: Record<string, number>
  }
  channels: Array<{
    index: number
    relid: number
    subchannelId: number
    /** `null` on a channel offered without a monitor (`monitored: false`). */
    monitorId: number | null
    guestToHostFrames: number
    guestToHostBytes: number
    hostToGuestFrames: number
    hostToGuestBytes: number
  }>
  vf: EmulatorVfState | null
  /** Rates over about the last second (null until the first sample, 100 ms after start). */
  rates: EmulatorRates | null
  /** The stats file (`statsJson`), when configured: path, writes so far, last error. */
  statsFile: { path: string; writes: number; error: string | null } | null
  [key: string]: unknown
}

/** Frames and frame bits per second (Ethernet header and payload; no preamble, FCS or gap). */
export interface Rate {
  pps: number
  bps: number
}

/** `stats().rates` / `netvsc ctl DIR stats rates`. */
export interface EmulatorRates {
  windowMs: number
  guestToHost: Rate
  hostToGuest: Rate
  /** Frames dropped per second, every reason. */
  dropsPps: number
  /** Frames per second the backend offered (generated, reflected, read from the TAP). */
  offeredPps: number
  channels: Array<{ index: number; guestToHost: Rate; hostToGuest: Rate }>
}

/** What the sequence checker found among the frames the guest sent back (`generatorStats().checker`). */
export interface GeneratorChecker {
  received: number
  /** Counters skipped and not (yet) seen. */
  lost: number
  reordered: number
  duplicates: number
  /** Frames without a stamp of this generator. */
  foreign: number
  latencyMinNs: number | null
  latencyAvgNs: number | null
  latencyMaxNs: number | null
}

/** The generator backend's settings and counters (`generatorStats()`, the `backend` object of `stats()`). */
export interface GeneratorStats {
  kind: 'generator'
  state: 'waiting' | 'running' | 'stopped' | 'done'
  /** null = unlimited. */
  ratePps: number | null
  burst: number | null
  frameSizes: number[]
  flows: number
  pattern: { proto: 'mixed' | 'tcp' | 'udp'; srcIp: string; dstIp: string; srcPort: string; dstPort: string | null }
  vlan: number | null
  limit: number | null
  durationMs: number | null
  generated: number
  bytes: number
  run: { generated: number; bytes: number; elapsedMs: number | null; measuredPps: number | null }
  runsCompleted: number
  stamped: boolean
  unstamped: number
  returned: number
  checker: GeneratorChecker
  [key: string]: unknown
}

/** A control command's reply: `ok`, then the command's fields (or `error`). */
export interface ControlReply {
  ok: boolean
  error?: string
  [key: string]: unknown
}

/** `null` when this process can run guests under the emulator (root, mount namespaces), else why not. */
export function canRunGuests(): string | null {
  return native.canRunGuests()
}

/** Runs `argv` against the tree at `dir` (blocking until it exits); returns its exit status. */
export function runGuest(dir: string, argv: string[]): number {
  try {
    return native.runGuest(dir, argv)
  } catch (err) {
    throw fromNative(err)
  }
}
