/** A minimal pcap (libpcap 2.4, microsecond, LINKTYPE_ETHERNET) writer, as tshark/tcpdump read it. */
import * as fs from 'node:fs'

export class PcapWriter {
  readonly #fd: number
  readonly #snaplen: number
  readonly #hdr = Buffer.alloc(16)
  count = 0

  constructor(file: string, snaplen = 65535) {
    this.#fd = fs.openSync(file, 'w')
    this.#snaplen = snaplen
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

  /** Appends one frame with the current time. */
  write(frame: Uint8Array, nowMs = Date.now()): void {
    const cap = Math.min(frame.length, this.#snaplen)
    this.#hdr.writeUInt32LE(Math.floor(nowMs / 1000), 0)
    this.#hdr.writeUInt32LE(Math.floor((nowMs % 1000) * 1000), 4)
    this.#hdr.writeUInt32LE(cap, 8)
    this.#hdr.writeUInt32LE(frame.length, 12)
    fs.writeSync(this.#fd, this.#hdr)
    fs.writeSync(this.#fd, frame, 0, cap)
    this.count++
  }

  close(): void {
    fs.closeSync(this.#fd)
  }
}

/** Reads a pcap written by PcapWriter (or any little-endian µs pcap): the frames' bytes. */
export function readPcap(file: string): Buffer[] {
  const b = fs.readFileSync(file)
  if (b.length < 24 || b.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian pcap`)
  const out: Buffer[] = []
  let o = 24
  while (o + 16 <= b.length) {
    const cap = b.readUInt32LE(o + 8)
    out.push(b.subarray(o + 16, o + 16 + cap))
    o += 16 + cap
  }
  return out
}
