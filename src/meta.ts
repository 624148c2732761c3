/**
 * Per-packet metadata words of the burst API (layout fixed by crates/netvsc-node/src/meta.rs; `nativeLayout()` is
 * checked against these constants at load). Each packet has `META_WORDS` u32 words in the `meta` array:
 *
 * - word 0 — VLAN: bit 31 set when present, bits 0..15 the 802.1Q TCI (rx: stripped by the host; tx: inserted).
 * - word 1 — rx: checksum verdicts (bits 0..1 IP, 2..3 L4: 0 unknown, 1 good, 2 bad);
 *            tx: offload request (TX_IP_CSUM | TX_TCP_CSUM | TX_UDP_CSUM | TX_IPV6, L2 length in bits 8..15,
 *            L3 length in bits 16..23; 0 means 14 and 20/40).
 * - word 2 — rx: RSS hash (when word 3 bit 31 is set).
 * - word 3 — rx: bit 31 hash present, bits 0..30 hash type; tx: TSO MSS (non-zero = segment at this MSS).
 */
export const META_WORDS = 4
/** Zero-copy descriptor words: offset, length, token, flags (bit 0: in the receive region). */
export const DESC_WORDS = 4
/** Counters per queue written by the addon's `queueStatsInto` (15 tx, 15 rx, rx missed). */
export const QUEUE_STAT_WORDS = 31

export const META_PRESENT = 0x8000_0000
export const TX_IP_CSUM = 1
export const TX_TCP_CSUM = 2
export const TX_UDP_CSUM = 4
export const TX_IPV6 = 8

export type CsumVerdict = 'unknown' | 'good' | 'bad'
const VERDICTS: readonly CsumVerdict[] = ['unknown', 'good', 'bad', 'unknown']

/** Decoded receive metadata of one packet (allocates: for inspection and tests, not the hot path). */
export interface RxMetadata {
  vlanTci: number | null
  ipChecksum: CsumVerdict
  l4Checksum: CsumVerdict
  rssHash: number | null
  hashType: number
}

/** A transmit request for one packet. */
export interface TxMetadata {
  vlanTci?: number
  /** Ask the host to fill in the IPv4 header checksum. */
  ipChecksum?: boolean
  /** Transport checksum to fill in. */
  l4Checksum?: 'tcp' | 'udp'
  ipv6?: boolean
  /** Ethernet header length (default 14). */
  l2Len?: number
  /** IP header length (default 20, or 40 for IPv6). */
  l3Len?: number
  /** Segment a TCP frame at this MSS (LSOv2). */
  tsoMss?: number
}

/** Decodes packet `i` of `meta`. */
export function decodeRxMeta(meta: Uint32Array, i: number): RxMetadata {
  const w = i * META_WORDS
  const w0 = meta[w] ?? 0
  const w1 = meta[w + 1] ?? 0
  const w3 = meta[w + 3] ?? 0
  const hashed = (w3 & META_PRESENT) !== 0
  return {
    vlanTci: (w0 & META_PRESENT) !== 0 ? w0 & 0xffff : null,
    ipChecksum: VERDICTS[w1 & 3] ?? 'unknown',
    l4Checksum: VERDICTS[(w1 >>> 2) & 3] ?? 'unknown',
    rssHash: hashed ? (meta[w + 2] ?? 0) >>> 0 : null,
    hashType: hashed ? w3 & 0x7fff_ffff : 0,
  }
}

/** Encodes `m` as packet `i` of `meta` (all four words written). */
export function encodeTxMeta(meta: Uint32Array, i: number, m: TxMetadata = {}): void {
  const w = i * META_WORDS
  if (m.vlanTci !== undefined && (!Number.isInteger(m.vlanTci) || m.vlanTci < 0 || m.vlanTci > 0xffff)) {
    throw new RangeError(`vlanTci must be 0..65535, got ${m.vlanTci}`)
  }
  meta[w] = m.vlanTci === undefined ? 0 : (META_PRESENT | m.vlanTci) >>> 0
  let flags = 0
  if (m.ipChecksum) flags |= TX_IP_CSUM
  if (m.l4Checksum === 'tcp') flags |= TX_TCP_CSUM
  if (m.l4Checksum === 'udp') flags |= TX_UDP_CSUM
  if (m.ipv6) flags |= TX_IPV6
  flags |= ((m.l2Len ?? 0) & 0xff) << 8
  flags |= ((m.l3Len ?? 0) & 0xff) << 16
  meta[w + 1] = flags >>> 0
  meta[w + 2] = 0
  meta[w + 3] = m.tsoMss ?? 0
}
