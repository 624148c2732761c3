/**
 * `npm run demo`: builds an emulated vmbus tree in a temporary directory and lists its devices through the native
 * addon, the way `netvsc list` does on a Hyper-V guest. (The full driver demo against the host emulator replaces
 * this once the data path lands.)
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import { listDevices, nativeVersion } from './index.js'
import { writeFakeTree } from './fake-sysfs.js'
import { formatDeviceTable } from './format.js'

const root = writeFakeTree(os.tmpdir())
try {
  const devices = listDevices({ root })
  process.stdout.write(`netvsc addon ${nativeVersion()}: ${devices.length} vmbus devices under ${root}\n\n`)
  process.stdout.write(`${formatDeviceTable(devices)}\n\n`)
  const nics = devices.filter((d) => d.isNetvsc && d.uioNumber !== null)
  for (const nic of nics) {
    process.stdout.write(
      `usable by the poll-mode driver: ${nic.uuid} on /dev/uio${nic.uioNumber}, ` +
        `${nic.channels.length} channels (${nic.subchannelCount} subchannels)\n`,
    )
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
