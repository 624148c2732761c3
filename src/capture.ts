/**
 * Packet capture of what this process's driver sends and receives. A device shares one `Tap` with the queues it
 * hands out; each burst checks `tap.sink` once, and only while a `Capture` is running do the frames of the burst
 * (tx: those the driver accepted; rx: copied or zero-copy) go to a pcap file, stamped once per burst.
 */
import { NetvscError } from './errors.js'
import { DESC_WORDS } from './meta.js'
import { PcapWriter } from './pcap.js'

/** Options of `Netvsc.startCapture`. */
export interface CaptureOptions {
  /** Stop by itself after this many frames (both directions together). Default: until stopped. */
  count?: number
  /** Bytes kept of each frame (default 65535; the record keeps the original length). */
  snaplen?: number
}

/** @internal The hook a device shares with its queues: null when not capturing. */
export interface Tap {
  sink: Capture | null
}

/** @internal Where zero-copy descriptors with flag bit 0 point. */
export interface RegionSource {
  recvRegion(): Uint8Array
}

function now(): number {
  return performance.timeOrigin + performance.now()
}

/** A running (or finished) capture into a pcap file. */
export class Capture {
  readonly file: string
  /** Frames this capture stops after (Infinity when unlimited). */
  readonly limit: number
  #writer: PcapWriter | null
  #frames = 0
  #error: Error | null = null
  readonly #tap: Tap
  readonly #onError: (err: NetvscError) => void

  /** @internal */
  constructor(file: string, options: CaptureOptions, tap: Tap, onError: (err: NetvscError) => void) {
    const { count, snaplen } = options
    if (count !== undefined && (!Number.isSafeInteger(count) || count < 1)) {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', `capture count must be a positive integer, got ${String(count)}`)
    }
    if (snaplen !== undefined && (!Number.isInteger(snaplen) || snaplen < 14 || snaplen > 262_144)) {
      throw new NetvscError('ERR_NETVSC_INVALID_ARG', `capture snaplen must be an integer in 14..262144, got ${String(snaplen)}`)
    }
    this.file = file
    this.limit = count ?? Infinity
    this.#tap = tap
    this.#onError = onError
    try {
      this.#writer = new PcapWriter(file, snaplen)
    } catch (err) {
      throw new NetvscError('ERR_NETVSC_IO', `cannot open capture file ${file}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Frames written so far. */
  get frames(): number {
    return this.#frames
  }

  /** Whether frames are still being recorded (false after `stop()`, the count limit or a write error). */
  get active(): boolean {
    return this.#writer !== null
  }

  /** The write error that ended the capture, if one did. */
  get error(): Error | null {
    return this.#error
  }

  /** Stops recording and closes the file (idempotent); returns the frames written. */
  stop(): number {
    const w = this.#writer
    if (w === null) return this.#frames
    this.#writer = null
    if (this.#tap.sink === this) this.#tap.sink = null
    try {
      w.close()
    } catch (err) {
      this.#fail(err)
    }
    return this.#frames
  }

  /** @internal The first `n` frames of `buf`, back to back with lengths in `lens`. */
  packed(buf: Uint8Array, lens: Uint32Array, n: number): void {
    const w = this.#writer
    if (w === null) return
    const take = Math.min(n, this.limit - this.#frames)
    const t = now()
    try {
      let off = 0
      for (let i = 0; i < take; i++) {
        const len = lens[i] ?? 0
        w.append(buf.subarray(off, off + len), t)
        off += len
      }
      this.#wrote(w, take)
    } catch (err) {
      this.#abort(err)
    }
  }

  /** @internal Zero-copy tx: frame i is `lens[i]` bytes at the start of buffer `bufIdx[i]` of `region`. */
  indexed(region: Uint8Array, bufSize: number, bufIdx: Uint32Array, lens: Uint32Array, n: number): void {
    const w = this.#writer
    if (w === null) return
    const take = Math.min(n, this.limit - this.#frames)
    const t = now()
    try {
      for (let i = 0; i < take; i++) {
        const off = (bufIdx[i] ?? 0) * bufSize
        w.append(region.subarray(off, off + (lens[i] ?? 0)), t)
      }
      this.#wrote(w, take)
    } catch (err) {
      this.#abort(err)
    }
  }

  /** @internal Zero-copy descriptors: flag bit 0 means the frame lies in the queue's receive region. */
  described(descs: Uint32Array, n: number, copied: Uint8Array, q: RegionSource): void {
    const w = this.#writer
    if (w === null) return
    const take = Math.min(n, this.limit - this.#frames)
    const t = now()
    try {
      for (let i = 0; i < take; i++) {
        const d = i * DESC_WORDS
        const off = descs[d] ?? 0
        const len = descs[d + 1] ?? 0
        const src = ((descs[d + 3] ?? 0) & 1) !== 0 ? q.recvRegion() : copied
        w.append(src.subarray(off, off + len), t)
      }
      this.#wrote(w, take)
    } catch (err) {
      this.#abort(err)
    }
  }

  #wrote(w: PcapWriter, k: number): void {
    w.flush()
    this.#frames += k
    if (this.#frames >= this.limit) this.stop()
  }

  #abort(err: unknown): void {
    this.#fail(err)
    const w = this.#writer
    this.#writer = null
    if (this.#tap.sink === this) this.#tap.sink = null
    try {
      w?.close()
    } catch {
      // the first error is the one reported
    }
  }

  #fail(err: unknown): void {
    const e = new NetvscError('ERR_NETVSC_IO', `capture to ${this.file} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    this.#error ??= e
    this.#onError(e)
  }
}
