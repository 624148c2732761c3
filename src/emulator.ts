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
  linkSpeedMbps?: number
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
    try {
      this.#emu = native.NativeEmulator.start({ ...options })
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

  /** Link up/down: the guest receives an RNDIS status indication. */
  setLink(up: boolean): void {
    this.#call(() => this.#emu.setLink(up))
  }

  /** Link speed in Mbit/s. */
  setLinkSpeed(mbps: number): void {
    this.#call(() => this.#emu.setLinkSpeed(mbps))
  }

  /** Offers (or withdraws) a VF; false if the negotiated protocol cannot carry it. */
  offerVf(allocated: boolean, serial: number): boolean {
    return this.#call(() => this.#emu.sendVfAssociation(allocated, serial))
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

/** The parts of the emulator's stats document the package relies on (the JSON has more). */
export interface EmulatorStats {
  nvspVersion: number | null
  rndisInitialized: boolean
  packetFilter: number
  linkUp: boolean
  linkSpeed: number
  subchannels: number
  totals: {
    guestToHostFrames: number
    guestToHostBytes: number
    hostToGuestFrames: number
    hostToGuestBytes: number
    drops: Record<string, number>
  }
  channels: Array<{
    index: number
    relid: number
    subchannelId: number
    guestToHostFrames: number
    guestToHostBytes: number
    hostToGuestFrames: number
    hostToGuestBytes: number
  }>
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
