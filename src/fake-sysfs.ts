/**
 * Writes a small emulated vmbus device tree (the layout of docs/contracts.md, "The emulated device tree") into a
 * directory, so `listDevices` can be shown and tested without Hyper-V. It is written independently of the Rust
 * emulator (crates/hv-emu), so it also cross-checks the reader against a second writer of the same convention.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

export const NETVSC_CLASS_ID = 'f8615163-df3e-46c5-913f-f2d2f965ed0e'
/** Class of the synthetic SCSI controller, used as the "some other vmbus device" in demos and tests. */
export const STORVSC_CLASS_ID = 'ba6163d9-04a1-4d29-b605-72e2ffb1dc7f'

export interface FakeMap {
  name: string
  size: number
}

export interface FakeChannel {
  relid: number
  subchannelId: number
  monitorId?: number
  /** Size of the channel's `ring` file; no file when absent. */
  ringSize?: number
}

export interface FakeDevice {
  uuid: string
  classId: string
  deviceId?: string
  relid: number
  monitorId?: number
  numaNode?: number
  /** Driver the `driver` symlink points at; unbound when absent. */
  driver?: string
  /** Creates `net/<iface>` (as when hv_netvsc owns the device). */
  iface?: string
  uio?: { number: number; maps: FakeMap[] }
  channels?: FakeChannel[]
}

const hex16 = (n: number): string => `0x${n.toString(16).padStart(16, '0')}`

/** A file of `size` bytes that takes no disk space until written. */
function sparseFile(file: string, size: number): void {
  fs.writeFileSync(file, '')
  fs.truncateSync(file, size)
}

/** Writes one device below `root` (which need not exist yet). Returns the device directory. */
export function writeFakeDevice(root: string, dev: FakeDevice): string {
  const devices = path.join(root, 'sys/bus/vmbus/devices')
  const dir = path.join(devices, dev.uuid)
  fs.mkdirSync(dir, { recursive: true })
  const attr = (name: string, value: string | number): void => fs.writeFileSync(path.join(dir, name), `${value}\n`)
  attr('class_id', `{${dev.classId}}`)
  attr('device_id', `{${dev.deviceId ?? dev.uuid}}`)
  attr('id', dev.relid)
  if (dev.monitorId !== undefined) attr('monitor_id', dev.monitorId)
  attr('numa_node', dev.numaNode ?? -1)
  if (dev.driver !== undefined) {
    fs.mkdirSync(path.join(root, 'sys/bus/vmbus/drivers', dev.driver), { recursive: true })
    fs.symlinkSync(`../../drivers/${dev.driver}`, path.join(dir, 'driver'))
  }
  if (dev.iface !== undefined) fs.mkdirSync(path.join(dir, 'net', dev.iface), { recursive: true })
  for (const ch of dev.channels ?? []) {
    const chDir = path.join(dir, 'channels', String(ch.relid))
    fs.mkdirSync(chDir, { recursive: true })
    fs.writeFileSync(path.join(chDir, 'subchannel_id'), `${ch.subchannelId}\n`)
    if (ch.monitorId !== undefined) fs.writeFileSync(path.join(chDir, 'monitor_id'), `${ch.monitorId}\n`)
    if (ch.ringSize !== undefined) sparseFile(path.join(chDir, 'ring'), ch.ringSize)
  }
  if (dev.uio) {
    const n = dev.uio.number
    const uioDir = path.join(dir, 'uio', `uio${n}`)
    fs.mkdirSync(uioDir, { recursive: true })
    fs.writeFileSync(path.join(uioDir, 'name'), 'uio_hv_generic\n')
    fs.writeFileSync(path.join(uioDir, 'version'), '0.02.1\n')
    fs.writeFileSync(path.join(uioDir, 'event'), '0\n')
    const backing = path.join(root, 'dev', `uio${n}.maps`)
    fs.mkdirSync(backing, { recursive: true })
    fs.writeFileSync(path.join(root, 'dev', `uio${n}`), '')
    dev.uio.maps.forEach((map, k) => {
      const mapDir = path.join(uioDir, 'maps', `map${k}`)
      fs.mkdirSync(mapDir, { recursive: true })
      fs.writeFileSync(path.join(mapDir, 'name'), `${map.name}\n`)
      fs.writeFileSync(path.join(mapDir, 'size'), `${hex16(map.size)}\n`)
      fs.writeFileSync(path.join(mapDir, 'addr'), `${hex16(0)}\n`)
      fs.writeFileSync(path.join(mapDir, 'offset'), `${hex16(0)}\n`)
      sparseFile(path.join(backing, `map${k}`), map.size)
    })
    const ctl = Buffer.alloc(4096)
    ctl.writeUInt32LE(0x48564355, 0) // "UCVH"
    fs.writeFileSync(path.join(backing, 'ctl'), ctl)
    const classUio = path.join(root, 'sys/class/uio')
    fs.mkdirSync(classUio, { recursive: true })
    fs.symlinkSync(`../../bus/vmbus/devices/${dev.uuid}/uio/uio${n}`, path.join(classUio, `uio${n}`))
  }
  return dir
}

/** The five maps uio_hv_generic gives a NIC, with the given sizes and GPADL handles. */
export function nicMaps(sizes: { rings: number; recv: number; send: number }, recvGpadl: number, sendGpadl: number): FakeMap[] {
  return [
    { name: 'txrx_rings', size: sizes.rings },
    { name: 'int_page', size: 4096 },
    { name: 'monitor_page', size: 4096 },
    { name: `recv:${recvGpadl}`, size: sizes.recv },
    { name: `send:${sendGpadl}`, size: sizes.send },
  ]
}

/**
 * The tree the demo and the tests start from: a NIC bound to uio_hv_generic (five maps, a primary channel and one
 * subchannel), a NIC still owned by hv_netvsc (`eth1`), and a storage controller.
 */
export function sampleDevices(): FakeDevice[] {
  return [
    {
      uuid: '4c1b6a5e-9f0d-4d4c-8f6b-2b1d3c5e7a90',
      classId: NETVSC_CLASS_ID,
      deviceId: '00000000-0000-8899-0000-000000000000',
      relid: 14,
      monitorId: 2,
      numaNode: 0,
      driver: 'uio_hv_generic',
      uio: { number: 3, maps: nicMaps({ rings: 2 * 256 * 1024, recv: 16 * 1024 * 1024, send: 1024 * 1024 }, 0xe1e10, 0xe1e11) },
      channels: [
        { relid: 14, subchannelId: 0, monitorId: 2 },
        { relid: 31, subchannelId: 1, monitorId: 3, ringSize: 2 * 256 * 1024 },
      ],
    },
    {
      uuid: '7d2a9c10-3e4f-4b6a-9d8e-0f1e2d3c4b5a',
      classId: NETVSC_CLASS_ID,
      relid: 15,
      monitorId: 4,
      numaNode: 0,
      driver: 'hv_netvsc',
      iface: 'eth1',
      channels: [{ relid: 15, subchannelId: 0, monitorId: 4 }],
    },
    {
      uuid: 'f8b3781b-1e82-4818-a1c3-63d806ec15bb',
      classId: STORVSC_CLASS_ID,
      relid: 2,
      driver: 'hv_storvsc',
      channels: [{ relid: 2, subchannelId: 0 }],
    },
  ]
}

/** Writes `devices` (default `sampleDevices()`) into a fresh directory under `parent`; returns its path. */
export function writeFakeTree(parent: string, devices: FakeDevice[] = sampleDevices()): string {
  const root = fs.mkdtempSync(path.join(parent, 'netvsc-tree-'))
  fs.mkdirSync(path.join(root, 'sys/bus/vmbus/devices'), { recursive: true })
  fs.mkdirSync(path.join(root, 'dev'), { recursive: true })
  for (const dev of devices) writeFakeDevice(root, dev)
  return root
}
