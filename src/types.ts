/**
 * Public record types, written by hand for readers of the API, and checked against the addon's generated
 * declarations (binding.d.ts): if the Rust side changes a field, `tsc --noEmit` fails here.
 */
import type * as native from '../binding.js'

/** Options of `listDevices`. */
export interface ListOptions {
  /** Directory holding `sys/bus/vmbus/devices`: `/` on a Hyper-V guest (the default), an emulated tree in tests. */
  root?: string
}

/** Sizes in bytes of a uio device's maps, by what they hold; `null` when the device has no such map. */
export interface MapSizes {
  /** Map 0 `txrx_rings`: the primary channel's two rings (guest→host, then host→guest). */
  rings: number | null
  /** Map 1 `int_page`. */
  intPage: number | null
  /** Map 2 `monitor_page`. */
  monitorPage: number | null
  /** Map 3 `recv:<gpadl>`: the receive buffer. */
  recv: number | null
  /** Map 4 `send:<gpadl>`: the send buffer. */
  send: number | null
}

/** One `channels/<relid>/` directory of a device. */
export interface VmbusChannel {
  relid: number
  /** 0 for the primary channel. */
  subchannelId: number
  monitorId: number | null
  /** Size of the channel's `ring` file, `null` while it does not exist. */
  ringSize: number | null
}

/** One vmbus device as sysfs shows it. */
export interface VmbusDevice {
  /** Instance GUID, lower case, no braces. */
  uuid: string
  /** Class GUID, lower case, no braces. */
  classId: string
  /** True for the Hyper-V synthetic NIC (class f8615163-df3e-46c5-913f-f2d2f965ed0e). */
  isNetvsc: boolean
  /** Primary channel relid. */
  relid: number
  monitorId: number | null
  /** NUMA node, -1 when unknown. */
  numaNode: number
  /** Bound driver (`uio_hv_generic`, `hv_netvsc`, ...), `null` when unbound. */
  driver: string | null
  /** Network interface name, when the kernel's hv_netvsc owns the device. */
  iface: string | null
  /** N of `/dev/uioN`, when bound to uio_hv_generic. */
  uioNumber: number | null
  mapSizes: MapSizes | null
  /** GPADL handle of the receive buffer (from the `recv:` map name). */
  recvGpadl: number | null
  /** GPADL handle of the send buffer (from the `send:` map name). */
  sendGpadl: number | null
  /** Channels other than the primary. */
  subchannelCount: number
  /** Every channel directory, sorted by relid. */
  channels: VmbusChannel[]
}

// Compile-time drift checks: each hand-written type must be exactly the generated one.
type Exactly<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
function sameType<_ extends true>(): void {}
sameType<Exactly<ListOptions, native.ListOptions>>()
sameType<Exactly<MapSizes, native.MapSizes>>()
sameType<Exactly<VmbusChannel, native.ChannelEntry>>()
sameType<Exactly<VmbusDevice, native.DeviceEntry>>()
