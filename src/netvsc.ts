/**
 * The device facade: `open()` brings a netvsc device up through the addon and returns a `Netvsc` (an
 * EventEmitter for 'link', 'vf' and 'error'); its queues move packets in bursts through caller-owned typed arrays
 * (frames back to back, lengths, `META_WORDS` metadata words per packet; see meta.ts). One queue has one owner:
 * the main thread or one worker (`openQueue(uuid, index)` inside a worker_threads worker).
 */
import { EventEmitter } from 'node:events'
import * as native from '../binding.js'
import { Capture, type CaptureOptions, type Tap } from './capture.js'
import { type Devargs, type DevargsObject, formatDevargs, parseDevargs } from './devargs.js'
import { released, watchOpen } from './collected.js'
import { NetvscError, fromNative } from './errors.js'
import { DESC_WORDS, META_WORDS, QUEUE_STAT_WORDS } from './meta.js'
import { type Telemetry, metricsText, readTelemetry } from './telemetry.js'

/** Options of `open`. */
export interface OpenOptions {
  /** Directory holding `sys/bus/vmbus` and `dev/uioN` (default `/`; the emulator's directory in tests). */
  root?: string
  /** DPDK devargs, as a string or an object (validated by `parseDevargs`). */
  devargs?: string | DevargsObject
  /** Queue pairs wanted (1..64; the host may grant fewer). Default 1. */
  queues?: number
  /** MTU (68..9202). Default 1500. */
  mtu?: number
  /** Offloads to enable where the host supports them (default both). */
  offloads?: { checksum?: boolean; tso?: boolean }
  /** RSS key (40 bytes), indirection table (128 queue indexes) and hash types (default all six). */
  rss?: RssOptions
  /** Limit for each host round trip during bring-up and control, in ms (default 60000). */
  timeoutMs?: number
  /** Start the port (set the packet filter) after bring-up. Default true. */
  start?: boolean
  /**
   * VF (accelerated networking) failover: when the host offers a VF, pair its kernel netdev (PCI slot = serial,
   * else the same MAC), open it with AF_XDP (else AF_PACKET) and move the data path to it; the same bursts then
   * use it transparently. Default: enabled, retry every 1000 ms up to 120 times, `prefer: 'auto'`.
   */
  vf?: { enabled?: boolean; retryMs?: number; retries?: number; prefer?: 'auto' | 'af_xdp' | 'af_packet' }
  /** Re-initialise the device after a ring error and emit `'recovered'` (default true). */
  recover?: boolean
}

export interface LinkState {
  up: boolean
  speedMbps: number
}

/** The payload of a 'link' event. */
export interface LinkEvent extends LinkState {
  /** `media` for connect/disconnect, `speed` for a speed change. */
  reason: 'media' | 'speed'
  /** Events merged away before this one because JS did not keep up. */
  coalesced: number
}

/** Where VF failover is. */
export type VfStateName = 'offered' | 'paired' | 'switched' | 'removed' | 'revoked'
/** Data-path kind of the VF port. */
export type VfMode = 'af_xdp' | 'af_packet'
/** Why a VF state changed. */
export type VfReason =
  | 'none'
  | 'link_down'
  | 'netdev_removed'
  | 'queue_error'
  | 'host_switched'
  | 'stopped'
  | 'revoked'
  | 'replaced'
/** A VF operation that failed (the synthetic path keeps working). */
export type VfFailure = 'pairing_gave_up' | 'switch_refused' | 'switch_failed' | 'vanished' | 'open_failed' | 'old_protocol'

/** A VF state change: `at` is wall-clock ms since the Unix epoch (µs resolution). */
export interface VfStateEvent {
  kind: 'state'
  state: VfStateName
  serial: number
  iface: string | null
  mode: VfMode | null
  reason: VfReason
  at: number
  coalesced: number
}

/** A VF failure; `detail` = attempts (pairing_gave_up), host status (switch_refused), NVSP version (old_protocol). */
export interface VfFailureEvent {
  kind: 'failure'
  failure: VfFailure
  serial: number
  iface: string | null
  detail: number | null
  at: number
  coalesced: number
}

/** The payload of a 'vf' event: failover state changes and failures, plus the host's raw notes. */
export type VfEvent =
  | VfStateEvent
  | VfFailureEvent
  | { kind: 'association'; allocated: boolean; serial: number; coalesced: number }
  | { kind: 'datapath'; toVf: boolean; coalesced: number }

/** `vfInfo()`: the failover state. */
export interface VfInfo {
  state: VfStateName
  serial: number
  iface: string | null
  ifindex: number
  mode: VfMode | null
  zeroCopy: boolean
  queues: number
  switched: boolean
}

export type DeviceInfo = native.NativeDeviceInfo

/** RSS hash types (DPDK's six; the NDIS names of Hyper-V's host). */
export type RssHashType = 'ipv4' | 'tcp_ipv4' | 'ipv6' | 'ipv6_ex' | 'tcp_ipv6' | 'tcp_ipv6_ex'
const HASH_TYPES: readonly RssHashType[] = ['ipv4', 'tcp_ipv4', 'ipv6', 'ipv6_ex', 'tcp_ipv6', 'tcp_ipv6_ex']

/** An RSS setting (`open`'s `rss`, `setRss`): parts left out are kept. */
export interface RssOptions {
  /** Toeplitz key, 40 bytes. */
  key?: Uint8Array | number[]
  /** Queue of each of the 128 hash buckets (bucket = hash % 128); every entry a queue of the device. */
  reta?: number[]
  /** Alias of `reta` (the name `open` has always taken). */
  table?: number[]
  /** Hash types; an empty list turns RSS off (everything on queue 0). */
  hashTypes?: RssHashType[]
}

/** RSS as configured on the device (`dev.rss()`, what `setRss` resolves with). */
export interface RssState {
  key: Uint8Array
  reta: number[]
  hashTypes: RssHashType[]
  /** Whether the host hashes (off with one queue unless set explicitly). */
  enabled: boolean
}

function checkRss(where: string, rss: RssOptions | undefined): void {
  if (rss === undefined) return
  if (rss === null || typeof rss !== 'object') throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${where} must be an object`)
  for (const k of Object.keys(rss)) {
    if (!['key', 'reta', 'table', 'hashTypes'].includes(k)) throw new NetvscError('ERR_NETVSC_INVALID_ARG', `unknown option '${where}.${k}'`)
  }
  if (rss.key !== undefined && (typeof rss.key !== 'object' || rss.key === null || rss.key.length !== 40)) {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${where}.key must be 40 bytes, got ${String((rss.key as { length?: number } | null)?.length)}`)
  }
  if (rss.reta !== undefined && rss.table !== undefined) throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${where}: give reta or table, not both`)
  const reta = rss.reta ?? rss.table
  const name = rss.reta !== undefined ? 'reta' : 'table'
  if (reta !== undefined) {
    if (!Array.isArray(reta) || reta.length !== 128) {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${where}.${name} must have 128 entries, got ${Array.isArray(reta) ? reta.length : typeof reta}`)
    }
    reta.forEach((q, i) => checkInt(`${where}.${name}[${i}]`, q, 0, 63))
  }
  if (rss.hashTypes !== undefined) {
    if (!Array.isArray(rss.hashTypes)) throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${where}.hashTypes must be an array`)
    for (const h of rss.hashTypes) {
      if (!HASH_TYPES.includes(h)) throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${where}.hashTypes: unknown type '${String(h)}' (one of ${HASH_TYPES.join(', ')})`)
    }
  }
}

function nativeRss(rss: RssOptions): native.RssOptions {
  const reta = rss.reta ?? rss.table
  return {
    ...(rss.key !== undefined && { key: Array.from(rss.key) }),
    ...(reta !== undefined && { table: reta }),
    ...(rss.hashTypes !== undefined && { hashTypes: [...rss.hashTypes] }),
  }
}

function rssState(r: native.NativeRss): RssState {
  return { key: Uint8Array.from(r.key), reta: r.table, hashTypes: r.hashTypes as RssHashType[], enabled: r.enabled }
}

/** Port totals, as DPDK's rte_eth_stats. */
export interface PortStats {
  ipackets: number
  opackets: number
  ibytes: number
  obytes: number
  imissed: number
  ierrors: number
  oerrors: number
}

const STAT_KEYS: readonly (keyof PortStats)[] = ['ipackets', 'opackets', 'ibytes', 'obytes', 'imissed', 'ierrors', 'oerrors']

function call<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw fromNative(err)
  }
}

/** Smallest MTU a Hyper-V host honours (frames of 1514 bytes; it takes a smaller NDIS_CONFIG MTU as 1514). */
export const MTU_MIN = 1500
/** Largest MTU a Hyper-V host accepts (frames of 9216 bytes). */
export const MTU_MAX = 9202

function checkInt(name: string, v: unknown, min: number, max: number): void {
  if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)) {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', `${name} must be an integer in ${min}..${max}, got ${String(v)}`)
  }
}

const layout = native.nativeLayout()
if (layout.metaWords !== META_WORDS || layout.descWords !== DESC_WORDS || layout.queueStatWords !== QUEUE_STAT_WORDS) {
  throw new Error(`netvsc: addon layout ${JSON.stringify(layout)} does not match src/meta.ts`)
}

/** Geometry of a queue's zero-copy transmit region (`Queue.txRegion`). */
export interface TxRegionOptions {
  /** Bytes per buffer: a power of two in 2048..131072 (default 2048). */
  bufSize?: number
  /** Buffers (default 1024). */
  count?: number
}

/** One batch yielded by a queue's async iterator: `count` frames in the queue's reusable arrays. */
export interface RxBatch {
  count: number
  buf: Uint8Array
  lens: Uint32Array
  meta: Uint32Array
}

/** A receive/transmit queue pair, owned by the thread that opened it. */
export class Queue {
  readonly #q: native.NativeQueue
  readonly index: number
  #region: Uint8Array | null = null
  #txRegion: Uint8Array | null = null
  #txBufSize = 0
  #onClose: (() => void) | undefined
  readonly #tap: Tap

  /** @internal `tap` is shared with the device that handed the queue out (its capture hook). */
  constructor(q: native.NativeQueue, onClose?: () => void, tap: Tap = { sink: null }) {
    this.#q = q
    this.index = q.index
    this.#onClose = onClose
    this.#tap = tap
    watchOpen(this, 'Queue', `netvsc queue ${q.index}`)
  }

  /**
   * Receives up to `min(lens.length, meta.length / META_WORDS)` frames into `buf`, back to back; frame i has length
   * `lens[i]` and metadata `meta[4i..4i+4]`. Frames that do not fit stay queued for the next call. Returns the count.
   */
  rxBurst(buf: Uint8Array, lens: Uint32Array, meta: Uint32Array): number {
    try {
      const n = this.#q.rxBurst(buf, lens, meta)
      if (this.#tap.sink !== null) this.#tap.sink.packed(buf, lens, n)
      return n
    } catch (err) {
      throw fromNative(err)
    }
  }

  /** Sends the first `n` frames of `buf` (lengths in `lens`, requests in `meta`); returns how many were taken. */
  txBurst(buf: Uint8Array, lens: Uint32Array, meta: Uint32Array, n: number = lens.length): number {
    try {
      const k = this.#q.txBurst(buf, lens, meta, n)
      if (this.#tap.sink !== null) this.#tap.sink.packed(buf, lens, k)
      return k
    } catch (err) {
      throw fromNative(err)
    }
  }

  /**
   * Zero-copy receive (devargs `rx_extmbuf_enable=1`): `descs[4i..4i+4]` = offset, length, token, flags. With flags
   * bit 0 the frame lies in `recvRegion()` at offset and must be given back with `release`; otherwise it was copied
   * into `buf` at offset. Returns the count.
   */
  rxBurstZeroCopy(descs: Uint32Array, meta: Uint32Array, buf: Uint8Array): number {
    try {
      const n = this.#q.rxBurstZeroCopy(descs, meta, buf)
      if (this.#tap.sink !== null) this.#tap.sink.described(descs, n, buf, this)
      return n
    } catch (err) {
      throw fromNative(err)
    }
  }

  /** Gives the first `n` zero-copy descriptors back to the host; returns how many views were released. */
  release(descs: Uint32Array, n: number): number {
    return call(() => this.#q.release(descs, n))
  }

  /** The receive buffer (mapped once for this queue, kept alive while referenced). */
  recvRegion(): Uint8Array {
    this.#region ??= new Uint8Array(call(() => this.#q.recvRegion()))
    return this.#region
  }

  /**
   * The queue's zero-copy transmit region: `count` buffers of `bufSize` bytes back to back (buffer i at
   * `i * bufSize`), DMA memory the host reads frames from directly. The first call creates it (defaults 2048 B ×
   * 1024); later calls return the same view, and asking for another geometry throws `ERR_NETVSC_INVALID_ARG`.
   * `bufSize` is a power of two in 2048..131072 (a 9014 B frame needs 16384), `count` 1..65536 (≤ 1 GiB in all).
   * Write a frame at the start of a buffer you own, then send it with `txBurstZeroCopy`.
   */
  txRegion(options: TxRegionOptions = {}): Uint8Array {
    const { bufSize, count } = options
    checkInt('txRegion bufSize', bufSize, 2048, 131072)
    checkInt('txRegion count', count, 1, 65536)
    const have = this.#txRegion
    if (have !== null && (bufSize ?? this.#txBufSize) === this.#txBufSize && (count ?? have.length / this.#txBufSize) === have.length / this.#txBufSize) {
      return have
    }
    // Create (or, with another geometry, be refused by) the addon; a view is mapped once per queue object.
    const ab = call(() => this.#q.txRegion(bufSize, count))
    this.#txRegion = new Uint8Array(ab)
    this.#txBufSize = this.#q.txRegionGeometry()?.[0] ?? 0
    return this.#txRegion
  }

  /**
   * Sends the first `n` frames written into `txRegion()`: frame i is `lens[i]` bytes at the start of buffer
   * `bufIdx[i]`, with `meta[4i..4i+4]` (as for `txBurst`) when given. Frames above `tx_copybreak` go GPA-direct from
   * the region (no copy), smaller ones are copied. Returns how many were taken; the rest met backpressure and are
   * still yours (retry them). A taken buffer is the driver's until `txReclaim` returns its index: naming it again
   * before that throws `ERR_NETVSC_TX_BUFFER_BUSY`, a bad index or length `ERR_NETVSC_INVALID_ARG`, and a refused
   * burst sends nothing.
   */
  txBurstZeroCopy(bufIdx: Uint32Array, lens: Uint32Array, n: number = bufIdx.length, meta?: Uint32Array): number {
    try {
      const k = this.#q.txBurstZeroCopy(bufIdx, lens, n, meta)
      if (this.#tap.sink !== null && k > 0 && this.#txRegion !== null) this.#tap.sink.indexed(this.#txRegion, this.#txBufSize, bufIdx, lens, k)
      return k
    } catch (err) {
      throw fromNative(err)
    }
  }

  /**
   * Writes into `out` the indices of transmit-region buffers the driver is done with (completed by the host, or
   * copied), each submitted buffer exactly once, oldest first; returns how many. They are yours again.
   */
  txReclaim(out: Uint32Array): number {
    return call(() => this.#q.txReclaim(out))
  }

  /** Zero-copy views not yet released. */
  get viewsOutstanding(): number {
    return this.#q.viewsOutstanding
  }

  /** Reaps tx completions (returns packets read from the ring). */
  pollCompletions(): number {
    return call(() => this.#q.pollCompletions())
  }

  /** Tx packets the host has not completed yet. */
  get txInFlight(): number {
    return this.#q.txInFlight
  }

  get closed(): boolean {
    return this.#q.isClosed
  }

  /**
   * After `dev.setQueues(n)` removed this queue (its index ≥ n): the device's queue count; bursts then throw
   * `ERR_NETVSC_QUEUE_REMOVED` (frames already taken from the driver still come out first) and `closed` is true.
   * null for a live queue.
   */
  get removed(): number | null {
    return this.#q.removed ?? null
  }

  /**
   * Async iteration over received bursts, polling every `idleMs` when idle (default 1 ms). The yielded batch and
   * its arrays are reused: consume them before the next step. Ends when the queue or its device closes.
   */
  async *bursts(options: { burst?: number; bufBytes?: number; idleMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<RxBatch> {
    const burst = options.burst ?? 32
    const batch: RxBatch = {
      count: 0,
      buf: new Uint8Array(options.bufBytes ?? burst * 9216),
      lens: new Uint32Array(burst),
      meta: new Uint32Array(burst * META_WORDS),
    }
    const idle = options.idleMs ?? 1
    while (!this.closed && !options.signal?.aborted) {
      batch.count = this.rxBurst(batch.buf, batch.lens, batch.meta)
      if (batch.count > 0) yield batch
      else await new Promise((r) => setTimeout(r, idle))
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<RxBatch> {
    return this.bursts()
  }

  /** Runs the Rust core's tx loop on this queue for `ms` (benchmark reference, not captured); returns frames taken. */
  rustTxLoop(frame: Uint8Array, burst: number, ms: number): number {
    return call(() => this.#q.rustTxLoop(frame, burst, ms))
  }

  /**
   * Runs the Rust core's zero-copy tx loop on this queue for `ms` (benchmark reference, not captured): `frame` in
   * every buffer of the tx region (created with `options` if the queue has none), bursts of `burst`, buffers
   * resubmitted as they are reclaimed. Returns frames taken.
   */
  rustTxZeroCopyLoop(frame: Uint8Array, burst: number, ms: number, options: TxRegionOptions = {}): number {
    return call(() => this.#q.rustTxZeroCopyLoop(frame, burst, ms, options.bufSize, options.count))
  }

  /**
   * Latency reference: `count` round trips of `frame` through a reflecting host (loopback), one in flight, timed in
   * the Rust core. Returns each round trip in ns (-1: not back within `timeoutMs`).
   */
  rustPingPong(frame: Uint8Array, count: number, timeoutMs = 1000): number[] {
    return call(() => this.#q.rustPingPong(frame, count, timeoutMs))
  }

  /** Runs the Rust core's rx loop on this queue for `ms` (benchmark reference); returns frames received. */
  rustRxLoop(burst: number, ms: number): number {
    return call(() => this.#q.rustRxLoop(burst, ms))
  }

  /** Gives the queue back (idempotent). */
  close(): void {
    released(this)
    this.#q.close()
    this.#onClose?.()
    this.#onClose = undefined
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

/** The payload of a 'recovered' event: the device was re-initialised after a ring error; queues work again. */
export interface RecoveredEvent {
  /** Recoveries so far on this device. */
  count: number
}

/** The events of a `Netvsc` and their payloads: `dev.on('link', (e) => …)` gets a typed `e`; an unknown name fails tsc. */
export interface NetvscEvents {
  link: [event: LinkEvent]
  vf: [event: VfEvent]
  error: [error: NetvscError]
  recovered: [event: RecoveredEvent]
}

/** Options of the async `open`: `signal` aborts the bring-up (rejects with `ERR_NETVSC_ABORTED`). */
export interface OpenAsyncOptions extends OpenOptions {
  signal?: AbortSignal
}

function nativeOptions(o: OpenOptions, devargs: Devargs): native.OpenOptions {
  const rss = o.rss
  return {
    root: o.root ?? '/',
    devargs: formatDevargs(devargs),
    ...(o.queues !== undefined && { queues: o.queues }),
    ...(o.mtu !== undefined && { mtu: o.mtu }),
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.offloads !== undefined && { offloads: { ...o.offloads } }),
    ...(o.vf !== undefined && { vf: { ...o.vf } }),
    ...(o.recover !== undefined && { recover: o.recover }),
    ...(rss !== undefined && { rss: nativeRss(rss) }),
  }
}

/** Events arriving before the `Netvsc` exists (during an async bring-up) wait here. */
class EventRelay {
  target: ((ev: native.NativeEvent) => void) | null = null
  readonly early: native.NativeEvent[] = []
  readonly fn = (ev: native.NativeEvent): void => {
    if (this.target) this.target(ev)
    else if (this.early.length < 64) this.early.push(ev)
  }
  attach(target: (ev: native.NativeEvent) => void): void {
    this.target = target
    for (const ev of this.early.splice(0)) target(ev)
  }
}

/** A settled async native call: its value, or `{ code, message }` thrown as a `NetvscError`. */
function settled<T>(r: T | native.NativeFailure): T {
  if (r !== null && typeof r === 'object' && 'code' in r && 'message' in r && typeof (r as native.NativeFailure).code === 'string' && !(r instanceof native.NativeDevice)) {
    throw fromNative(Object.assign(new Error(r.message), { code: r.code }))
  }
  return r as T
}

/**
 * An open netvsc device: a typed EventEmitter (see `NetvscEvents`: `'link'`, `'vf'`, `'error'`, `'recovered'`).
 * Events come from a native thread that keeps the event loop alive while the device is open, unless `unref()`
 * is called. Made by `open()` (a Promise) or `openSync()`.
 */
export class Netvsc extends EventEmitter<NetvscEvents> {
  readonly #dev: native.NativeDevice
  readonly uuid: string
  readonly root: string
  readonly devargs: Devargs
  readonly #queues = new Map<number, Queue>()
  #promiscuous = false
  #allMulticast = true
  #statsBuf = new Float64Array(7)
  readonly #tap: Tap = { sink: null }
  #capture: Capture | null = null

  /** @internal Use `open()` or `openSync()`. */
  constructor(dev: native.NativeDevice, devargs: Devargs, relay: EventRelay) {
    super()
    this.#dev = dev
    this.devargs = devargs
    this.uuid = dev.uuid
    this.root = dev.root
    watchOpen(this, 'Netvsc', `netvsc device ${this.uuid}`)
    relay.attach((ev) => this.#onEvent(ev))
  }

  /** @internal */
  static openSync(name: string, options: OpenOptions): Netvsc {
    const o = validate(options)
    const devargs = parseDevargs(o.devargs ?? '')
    const relay = new EventRelay()
    const dev = new Netvsc(call(() => native.NativeDevice.open(name, nativeOptions(o, devargs), relay.fn)), devargs, relay)
    if (o.start !== false) {
      try {
        dev.start()
      } catch (err) {
        dev.close()
        throw err
      }
    }
    return dev
  }

  /** @internal */
  static async open(name: string, options: OpenAsyncOptions): Promise<Netvsc> {
    const { signal, ...rest } = options
    const o = validate(rest)
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'options.signal must be an AbortSignal')
    const aborted = (): NetvscError => new NetvscError('ERR_NETVSC_ABORTED', `open(${name}) was aborted`, { cause: signal?.reason })
    if (signal?.aborted) throw aborted()
    const devargs = parseDevargs(o.devargs ?? '')
    const relay = new EventRelay()
    const cancel = new native.NativeCancel()
    const onAbort = (): void => cancel.cancel()
    signal?.addEventListener('abort', onAbort, { once: true })
    let nd: native.NativeDevice
    try {
      nd = settled(await call(() => native.NativeDevice.openAsync(name, nativeOptions(o, devargs), relay.fn, cancel)))
    } catch (err) {
      if (err instanceof NetvscError && err.code === 'ERR_NETVSC_ABORTED') throw aborted()
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    const dev = new Netvsc(nd, devargs, relay)
    if (signal?.aborted) {
      dev.close()
      throw aborted()
    }
    if (o.start !== false) {
      try {
        await dev.startAsync()
      } catch (err) {
        dev.close()
        throw err
      }
    }
    return dev
  }

  #onEvent(ev: native.NativeEvent): void {
    const coalesced = ev.coalesced ?? 0
    switch (ev.kind) {
      case 'link':
      case 'speed': {
        const up = ev.up ?? (this.#dev.isClosed ? false : call(() => this.#dev.cachedLink().up))
        const e: LinkEvent = { up, speedMbps: ev.speedMbps ?? 0, reason: ev.kind === 'link' ? 'media' : 'speed', coalesced }
        this.emit('link', e)
        return
      }
      case 'vf':
        this.emit('vf', { kind: 'association', allocated: ev.allocated ?? false, serial: ev.serial ?? 0, coalesced } satisfies VfEvent)
        return
      case 'datapath':
        this.emit('vf', { kind: 'datapath', toVf: ev.toVf ?? false, coalesced } satisfies VfEvent)
        return
      case 'vfstate':
        this.emit('vf', {
          kind: 'state',
          state: (ev.state ?? 'offered') as VfStateName,
          serial: ev.serial ?? 0,
          iface: ev.iface ?? null,
          mode: (ev.mode ?? null) as VfMode | null,
          reason: (ev.reason ?? 'none') as VfReason,
          at: ev.at ?? 0,
          coalesced,
        } satisfies VfEvent)
        return
      case 'vferror':
        this.emit('vf', {
          kind: 'failure',
          failure: (ev.failure ?? 'open_failed') as VfFailure,
          serial: ev.serial ?? 0,
          iface: ev.iface ?? null,
          detail: ev.detail ?? null,
          at: ev.at ?? 0,
          coalesced,
        } satisfies VfEvent)
        return
      case 'error':
        if (this.listenerCount('error') > 0) {
          const err = new NetvscError((ev.code as never) ?? 'ERR_NETVSC_PROTOCOL', ev.message ?? 'device error')
          if (ev.queue != null) {
            // A ring error: which queue, which ring rule, at which data-area offset.
            Object.assign(err, { queue: ev.queue, what: ev.what ?? '', offset: ev.offset ?? 0 })
          }
          this.emit('error', err)
        }
        return
      case 'recovered':
        this.emit('recovered', { count: ev.count ?? 0 } satisfies RecoveredEvent)
        return
    }
  }

  /** The telemetry page this process publishes for the device (`<root>/run/netvsc/<uuid>.telemetry`), or null. */
  get telemetryPath(): string | null {
    return this.#dev.telemetryPath ?? null
  }

  /** This device's telemetry as other processes see it (published every 100 ms by the control thread). */
  telemetry(): Telemetry {
    return readTelemetry(this.uuid, { root: this.root })
  }

  /**
   * Prometheus text exposition of this device (what `netvsc metrics` serves for every device). To feed
   * prom-client, register a collector that returns it, or merge it into `register.metrics()` output.
   */
  metrics(): string {
    return metricsText([this.telemetry()])
  }

  /** What bring-up negotiated (MAC, MTU, versions, queues, buffers, offload capabilities, devargs). */
  info(): DeviceInfo {
    return call(() => this.#dev.info())
  }

  get closed(): boolean {
    return this.#dev.isClosed
  }

  get started(): boolean {
    return this.#dev.isStarted
  }

  /** Number of queue pairs in use. */
  get queueCount(): number {
    return this.#dev.queueCount
  }

  start(): void {
    call(() => this.#dev.start())
  }

  stop(): void {
    call(() => this.#dev.stop())
  }

  /** The queue `index` for this thread (claims it; a second claim anywhere in the process fails). */
  queue(index = 0): Queue {
    checkInt('queue index', index, 0, 63)
    const have = this.#queues.get(index)
    if (have && !have.closed) return have
    // A queue removed by setQueues may be closed after a new one took its index: it forgets only itself.
    const q: Queue = new Queue(
      call(() => this.#dev.queue(index)),
      () => {
        if (this.#queues.get(index) === q) this.#queues.delete(index)
      },
      this.#tap,
    )
    this.#queues.set(index, q)
    return q
  }

  /** Every queue pair, claimed for this thread. */
  queues(): Queue[] {
    return Array.from({ length: this.queueCount }, (_, i) => this.queue(i))
  }

  /** Whether promiscuous mode was last set on. */
  get promiscuous(): boolean {
    return this.#promiscuous
  }

  /** Turns promiscuous mode on or off (an RNDIS round trip to the host, off the event loop). */
  async setPromiscuous(on: boolean): Promise<void> {
    settled(await call(() => this.#dev.setPromiscuousAsync(Boolean(on))))
    this.#promiscuous = Boolean(on)
  }

  /** `setPromiscuous` blocking the event loop (scripts). */
  setPromiscuousSync(on: boolean): void {
    call(() => this.#dev.setPromiscuous(Boolean(on)))
    this.#promiscuous = Boolean(on)
  }

  /** Whether all-multicast was last set on (default on). */
  get allMulticast(): boolean {
    return this.#allMulticast
  }

  /** Turns all-multicast reception on or off (off the event loop). */
  async setAllMulticast(on: boolean): Promise<void> {
    settled(await call(() => this.#dev.setAllMulticastAsync(Boolean(on))))
    this.#allMulticast = Boolean(on)
  }

  /** `setAllMulticast` blocking the event loop (scripts). */
  setAllMulticastSync(on: boolean): void {
    call(() => this.#dev.setAllMulticast(Boolean(on)))
    this.#allMulticast = Boolean(on)
  }

  /** Last NDIS packet filter value set. */
  get packetFilter(): number {
    return call(() => this.#dev.packetFilter)
  }

  /** Queries the link from the host. */
  async link(): Promise<LinkState> {
    const l = settled(await call(() => this.#dev.linkAsync()))
    return { up: l.up, speedMbps: l.speedMbps }
  }

  /** `link()` blocking the event loop (scripts). */
  linkSync(): LinkState {
    const l = call(() => this.#dev.link())
    return { up: l.up, speedMbps: l.speedMbps }
  }

  /** The link as last learned from the host's notes (no round trip). */
  cachedLink(): LinkState {
    const l = call(() => this.#dev.cachedLink())
    return { up: l.up, speedMbps: l.speedMbps }
  }

  /**
   * The host's send indirection table (NVSP SEND_INDIRECTION_TABLE, sent once the subchannels are open): 16 queue
   * indices, entry `hash % 16` being the queue Linux would transmit a flow with that RSS hash on; `null` until the
   * host sent a valid one. The driver does no queue selection itself (you pick the queue, as with DPDK).
   */
  sendTable(): number[] | null {
    return call(() => this.#dev.sendTable()) ?? null
  }

  #checkMtu(mtu: number): void {
    checkInt('mtu', mtu, MTU_MIN, MTU_MAX)
    if ([...this.#queues.values()].some((q) => !q.closed)) {
      throw new NetvscError('ERR_NETVSC_STARTED', 'close every queue before changing the MTU')
    }
  }

  /**
   * Changes the MTU: a full teardown and bring-up with the new value, off the event loop (stops and restarts
   * the port; queues must be closed first).
   */
  async setMtu(mtu: number): Promise<void> {
    this.#checkMtu(mtu)
    const wasStarted = this.started
    if (wasStarted) await this.#async(() => this.#dev.stopAsync())
    await this.#async(() => this.#dev.setMtuAsync(mtu))
    if (wasStarted) await this.#async(() => this.#dev.startAsync())
  }

  /** `setMtu` blocking the event loop (scripts). */
  setMtuSync(mtu: number): void {
    this.#checkMtu(mtu)
    const wasStarted = this.started
    if (wasStarted) this.stop()
    call(() => this.#dev.setMtu(mtu))
    if (wasStarted) this.start()
  }

  /** Moves the data path to the VF (true) or back to synthetic (NVSP SWITCH_DATA_PATH, off the event loop). */
  async switchDatapath(toVf: boolean): Promise<void> {
    await this.#async(() => this.#dev.switchDatapathAsync(Boolean(toVf)))
  }

  /**
   * Changes the number of queue pairs on the open device (started or not), off the event loop; resolves with the
   * count in use. A full NVSP/RNDIS re-initialisation that loses nothing the host delivered: frames still in the
   * old rings come out of the next bursts (those of removed queues on the queue the new RSS table gives them).
   * Queues below the new count stay valid; removed ones report `removed` and their bursts throw
   * `ERR_NETVSC_QUEUE_REMOVED`. The RSS table is reset to round robin (key and hash types kept). Rejects with
   * `ERR_NETVSC_VIEWS_OUTSTANDING` while zero-copy views are held.
   */
  async setQueues(n: number): Promise<number> {
    checkInt('queues', n, 1, 64)
    const got = await this.#async(() => this.#dev.setQueuesAsync(n))
    // Removed queues give their claims back now (so a later growth can hand the index out again).
    for (const q of this.#queues.values()) void q.removed
    return got
  }

  /**
   * Changes the RSS key, indirection table (`reta`) and/or hash types, off the event loop: one RNDIS
   * OID_GEN_RECEIVE_SCALE_PARAMETERS set (RSS disabled, then the new parameters); channels stay open and nothing
   * in the rings moves. Resolves with the new state.
   */
  async setRss(rss: RssOptions): Promise<RssState> {
    checkRss('rss', rss)
    return rssState(await this.#async(() => this.#dev.setRssAsync(nativeRss(rss))))
  }

  /** RSS as configured now. */
  rss(): RssState {
    return rssState(call(() => this.#dev.rss()))
  }

  async #async<T>(fn: () => Promise<T | native.NativeFailure>): Promise<T> {
    return settled(await call(fn))
  }

  /** @internal Start off the event loop (used by `open`). */
  async startAsync(): Promise<void> {
    await this.#async(() => this.#dev.startAsync())
  }

  /** Port totals. */
  stats(): PortStats {
    this.statsInto(this.#statsBuf)
    const out = {} as PortStats
    STAT_KEYS.forEach((k, i) => (out[k] = this.#statsBuf[i] ?? 0))
    return out
  }

  /** Port totals into `out` (7 slots, in PortStats key order), allocation-free. */
  statsInto(out: Float64Array): void {
    call(() => this.#dev.statsInto(out))
  }

  /** DPDK-named extended statistics (`tx_q0_good_packets`, `rx_q1_ring full`, …). */
  xstats(): Record<string, number> {
    const n = this.queueCount
    const buf = new Float64Array(n * QUEUE_STAT_WORDS)
    const got = this.#dev.queueStatsInto(buf)
    const names = this.#dev.statNames()
    const out: Record<string, number> = {}
    for (const [dir, base] of [['tx', 0], ['rx', names.length]] as const) {
      for (let q = 0; q < got; q++) {
        names.forEach((name, i) => (out[`${dir}_q${q}_${name}`] = buf[q * QUEUE_STAT_WORDS + base + i] ?? 0))
      }
    }
    for (const { name, value } of call(() => this.#dev.hvXstats())) out[name] = value
    for (const { name, value } of this.#dev.vfXstats()) out[name] = value
    return out
  }

  /** Per-queue counters: packets/bytes/errors each way plus rx missed. */
  queueStats(): Array<{ queue: number; txPackets: number; txBytes: number; txErrors: number; rxPackets: number; rxBytes: number; rxErrors: number; rxMissed: number }> {
    const n = this.queueCount
    const buf = new Float64Array(n * QUEUE_STAT_WORDS)
    const got = this.#dev.queueStatsInto(buf)
    return Array.from({ length: got }, (_, q) => {
      const v = (i: number) => buf[q * QUEUE_STAT_WORDS + i] ?? 0
      return { queue: q, txPackets: v(0), txBytes: v(1), txErrors: v(2), rxPackets: v(15), rxBytes: v(16), rxErrors: v(17), rxMissed: v(30) }
    })
  }

  resetStats(): void {
    call(() => this.#dev.resetStats())
  }

  /** The VF serial the host offered, or null. */
  vf(): number | null {
    return call(() => this.#dev.vf())
  }

  /** VF failover state (paired netdev, mode, queues, switched), or null before any VF was offered. */
  vfInfo(): VfInfo | null {
    const i = call(() => this.#dev.vfInfo())
    if (!i) return null
    return {
      state: i.state as VfStateName,
      serial: i.serial,
      iface: i.iface ?? null,
      ifindex: i.ifindex,
      mode: (i.mode ?? null) as VfMode | null,
      zeroCopy: i.zeroCopy,
      queues: i.queues,
      switched: i.switched,
    }
  }

  /** Events merged because the JS side did not keep up. */
  get eventsCoalesced(): number {
    return this.#dev.eventsCoalesced
  }

  /** Lets the process exit while the device is open. */
  unref(): this {
    call(() => this.#dev.unref())
    return this
  }

  /** Undoes `unref()`. */
  ref(): this {
    call(() => this.#dev.ref())
    return this
  }

  /**
   * Starts recording every frame this thread's queues of the device send (those `txBurst` accepted, as given, VLAN
   * requests staying metadata) and receive (`rxBurst`, `bursts()`, `rxBurstZeroCopy`) into a pcap file (Ethernet,
   * µs timestamps), in the order the bursts happen. Stops after `options.count` frames, at `stopCapture()` or
   * `close()`. Queues opened in workers with `openQueue` and the Rust benchmark loops are not recorded. When not
   * capturing, a burst costs one null check.
   */
  startCapture(file: string, options: CaptureOptions = {}): Capture {
    if (typeof file !== 'string' || file === '') throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'startCapture() needs a file name')
    if (options === null || typeof options !== 'object') throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'capture options must be an object')
    if (this.closed) throw new NetvscError('ERR_NETVSC_CLOSED', 'the device is closed')
    if (this.#tap.sink !== null) throw new NetvscError('ERR_NETVSC_STARTED', `a capture to ${this.#tap.sink.file} is already running`)
    const cap = new Capture(file, options, this.#tap, (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err)
    })
    this.#capture = cap
    this.#tap.sink = cap
    return cap
  }

  /** Stops the capture (idempotent); returns the frames the last capture wrote (0 if none was started). */
  stopCapture(): number {
    return this.#capture?.stop() ?? 0
  }

  /** Whether a capture is recording. */
  get capturing(): boolean {
    return this.#tap.sink !== null
  }

  /** Stops a capture, closes the queues of this thread, then the device (idempotent). */
  close(): void {
    released(this)
    this.#capture?.stop()
    for (const q of [...this.#queues.values()]) q.close()
    call(() => this.#dev.close())
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

function validate(options: OpenOptions): OpenOptions {
  if (options === null || typeof options !== 'object') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', `options must be an object, got ${options === null ? 'null' : typeof options}`)
  }
  const known = new Set(['root', 'devargs', 'queues', 'mtu', 'offloads', 'rss', 'timeoutMs', 'start', 'vf', 'recover'])
  for (const k of Object.keys(options)) {
    if (!known.has(k)) throw new NetvscError('ERR_NETVSC_INVALID_ARG', `unknown option '${k}'`)
  }
  if (options.root !== undefined && (typeof options.root !== 'string' || options.root === '')) {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'options.root must be a non-empty string')
  }
  if (options.recover !== undefined && typeof options.recover !== 'boolean') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'options.recover must be a boolean')
  }
  checkInt('options.queues', options.queues, 1, 64)
  checkInt('options.mtu', options.mtu, MTU_MIN, MTU_MAX)
  checkInt('options.timeoutMs', options.timeoutMs, 1, 3_600_000)
  const vf = options.vf
  if (vf !== undefined) {
    if (vf === null || typeof vf !== 'object') throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'options.vf must be an object')
    const vfKnown = new Set(['enabled', 'retryMs', 'retries', 'prefer'])
    for (const k of Object.keys(vf)) {
      if (!vfKnown.has(k)) throw new NetvscError('ERR_NETVSC_INVALID_ARG', `unknown option 'vf.${k}'`)
    }
    if (vf.enabled !== undefined && typeof vf.enabled !== 'boolean') {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'options.vf.enabled must be a boolean')
    }
    checkInt('options.vf.retryMs', vf.retryMs, 1, 3_600_000)
    checkInt('options.vf.retries', vf.retries, 1, 1_000_000)
    if (vf.prefer !== undefined && !['auto', 'af_xdp', 'af_packet'].includes(vf.prefer)) {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', `options.vf.prefer must be 'auto', 'af_xdp' or 'af_packet', got '${String(vf.prefer)}'`)
    }
  }
  checkRss('options.rss', options.rss)
  return options
}

/**
 * Opens the netvsc device `uuidOrIface` (bound to uio_hv_generic) and starts it unless `start: false`. The
 * bring-up (NVSP/RNDIS round trips, up to `timeoutMs` each) runs on a native thread; the event loop keeps
 * running. `signal` aborts it: the promise rejects with `ERR_NETVSC_ABORTED` and the half-open device is torn
 * down, so it can be opened again.
 */
export async function open(uuidOrIface: string, options: OpenAsyncOptions = {}): Promise<Netvsc> {
  if (typeof uuidOrIface !== 'string' || uuidOrIface === '') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'open() needs a device uuid or interface name')
  }
  if (options === null || typeof options !== 'object') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', `options must be an object, got ${options === null ? 'null' : typeof options}`)
  }
  return Netvsc.open(uuidOrIface, options)
}

/** `open` blocking the event loop for the whole bring-up (scripts, REPL). */
export function openSync(uuidOrIface: string, options: OpenOptions = {}): Netvsc {
  if (typeof uuidOrIface !== 'string' || uuidOrIface === '') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', 'openSync() needs a device uuid or interface name')
  }
  return Netvsc.openSync(uuidOrIface, options)
}

/**
 * Opens queue `index` of device `uuid` for the calling thread — in a worker_threads worker, for a device the main
 * thread opened with `open()`. The queue is released when closed or when the worker terminates.
 */
export function openQueue(uuid: string, index: number, options: { root?: string } = {}): Queue {
  checkInt('queue index', index, 0, 63)
  return new Queue(call(() => native.openQueue(uuid, index, options.root ?? '/')))
}

/** Queues claimed in this process, all threads included. */
export function claimedQueueCount(): number {
  return native.claimedQueueCount()
}
