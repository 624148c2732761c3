/**
 * A minimal pcap (libpcap 2.4, microsecond, LINKTYPE_ETHERNET) writer, as tshark/tcpdump read it. Records are staged
 * in one reused buffer and written with one system call per `flush()` (a burst), or at once by `write()`.
 */
import * as fs from 'node:fs'

const RECORD_HEADER = 16

export class PcapWriter {
  readonly #fd: number
  readonly #snaplen: number
  readonly #stage: Buffer
  #used = 0
  count = 0

  constructor(file: string, snaplen = 65535, stageBytes = 256 * 1024) {
    this.#fd = fs.openSync(file, 'w')
    this.#snaplen = snaplen
    this.#stage = Buffer.allocUnsafe(Math.max(stageBytes, RECORD_HEADER + 64))
    const g = Buffer.alloc(24)
    g.writeUInt32LE(0xa1b2c3d4, 0)
    g.writeUInt16LE(2, 4)
    g.writeUInt16LE(4, 6)
    g.writeInt32LE(0, 8)
    g.writeUInt32LE(0, 12)
    g.writeUInt32LE(snaplen, 16)
    g.writeUInt32LE(1, 20)
    fs.writeSync(this.#fd, g)
  }

  /** Appends one frame stamped `nowMs` (ms since the epoch, fractions kept to the µs) and writes it out. */
  write(frame: Uint8Array, nowMs = Date.now()): void {
    this.append(frame, nowMs)
    this.flush()
  }

  /** Stages one frame record; `flush()` writes what is staged (a full stage is flushed on the way). */
  append(frame: Uint8Array, nowMs: number): void {
    const cap = Math.min(frame.length, this.#snaplen)
    if (this.#used + RECORD_HEADER + cap > this.#stage.length) {
      this.flush()
      if (RECORD_HEADER + cap > this.#stage.length) {
        const hdr = Buffer.alloc(RECORD_HEADER)
        stamp(hdr, 0, nowMs, cap, frame.length)
        fs.writeSync(this.#fd, hdr)
        fs.writeSync(this.#fd, frame, 0, cap)
        this.count++
        return
      }
    }
    stamp(this.#stage, this.#used, nowMs, cap, frame.length)
    this.#stage.set(cap === frame.length ? frame : frame.subarray(0, cap), this.#used + RECORD_HEADER)
    this.#used += RECORD_HEADER + cap
    this.count++
  }

  /** Writes the staged records. */
  flush(): void {
    let off = 0
    while (off < this.#used) off += fs.writeSync(this.#fd, this.#stage, off, this.#used - off)
    this.#used = 0
  }

  close(): void {
    try {
      this.flush()
    } finally {
      fs.closeSync(this.#fd)
    }
  }
}

function stamp(b: Buffer, at: number, nowMs: number, cap: number, len: number): void {
  const sec = Math.floor(nowMs / 1000)
  b.writeUInt32LE(sec >>> 0, at)
  b.writeUInt32LE(Math.min(999_999, Math.floor((nowMs - sec * 1000) * 1000)), at + 4)
  b.writeUInt32LE(cap, at + 8)
  b.writeUInt32LE(len, at + 12)
}

/** Reads a pcap written by PcapWriter (or any little-endian µs pcap): the frames' bytes. */
export function readPcap(file: string): Buffer[] {
  return readPcapRecords(file).map((r) => r.data)
}

/** One pcap record: timestamp (seconds, microseconds), bytes kept and the frame's original length. */
export interface PcapRecord {
  sec: number
  usec: number
  origLen: number
  data: Buffer
}

/** Reads every record of a little-endian µs pcap, checking the header and that no record runs past the end. */
export function readPcapRecords(file: string): PcapRecord[] {
  const b = fs.readFileSync(file)
  if (b.length < 24 || b.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian pcap`)
  const out: PcapRecord[] = []
  let o = 24
  while (o + RECORD_HEADER <= b.length) {
    const cap = b.readUInt32LE(o + 8)
    if (o + RECORD_HEADER + cap > b.length) throw new Error(`${file}: record at byte ${o} runs past the end (${cap} bytes)`)
    out.push({ sec: b.readUInt32LE(o), usec: b.readUInt32LE(o + 4), origLen: b.readUInt32LE(o + 12), data: b.subarray(o + RECORD_HEADER, o + RECORD_HEADER + cap) })
    o += RECORD_HEADER + cap
  }
  if (o !== b.length) throw new Error(`${file}: ${b.length - o} trailing bytes after the last record`)
  return out
}
