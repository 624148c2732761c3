/**
 * listDevices through the generated loader and the TypeScript facade, against trees written by src/fake-sysfs.ts
 * (independently of the Rust reader), plus the `netvsc list` CLI run as a child process.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { NetvscError, type NetvscErrorCode, listDevices, nativeVersion, type VmbusDevice } from '../src/index.js'
import * as native from '../binding.js'
import {
  NETVSC_CLASS_ID,
  STORVSC_CLASS_ID,
  type FakeDevice,
  nicMaps,
  sampleDevices,
  writeFakeDevice,
  writeFakeTree,
} from '../src/fake-sysfs.js'

const repo = path.resolve(__dirname, '..')
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'netvsc-list-spec-'))
test.after.always(() => fs.rmSync(scratch, { recursive: true, force: true }))

function expectNetvscError(t: import('ava').ExecutionContext, fn: () => unknown, code: NetvscErrorCode, fragment: string): NetvscError {
  const err = t.throws(fn, { instanceOf: NetvscError })
  if (!err) throw new Error('unreachable')
  t.is(err.code, code)
  t.true(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`)
  return err
}

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), ...args], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 90_000,
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

test('the loader loads the addon built from this checkout', (t) => {
  const cargo = fs.readFileSync(path.join(repo, 'Cargo.toml'), 'utf8')
  const version = /\[workspace\.package\][^[]*?version\s*=\s*"([^"]+)"/.exec(cargo)?.[1]
  if (version === undefined) return t.fail('no [workspace.package] version in Cargo.toml')
  t.is(nativeVersion(), version)
  t.is(native.__napiBindingTarget, 'native')
})

test('lists every device of the sample tree with every field', (t) => {
  const root = writeFakeTree(scratch)
  const devices = listDevices({ root })
  const expected: VmbusDevice[] = [
    {
      uuid: '4c1b6a5e-9f0d-4d4c-8f6b-2b1d3c5e7a90',
      classId: NETVSC_CLASS_ID,
      isNetvsc: true,
      relid: 14,
      monitorId: 2,
      numaNode: 0,
      driver: 'uio_hv_generic',
      iface: null,
      uioNumber: 3,
      mapSizes: { rings: 524288, intPage: 4096, monitorPage: 4096, recv: 16777216, send: 1048576 },
      recvGpadl: 0xe1e10,
      sendGpadl: 0xe1e11,
      subchannelCount: 1,
      channels: [
        { relid: 14, subchannelId: 0, monitorId: 2, ringSize: null },
        { relid: 31, subchannelId: 1, monitorId: 3, ringSize: 524288 },
      ],
    },
    {
      uuid: '7d2a9c10-3e4f-4b6a-9d8e-0f1e2d3c4b5a',
      classId: NETVSC_CLASS_ID,
      isNetvsc: true,
      relid: 15,
      monitorId: 4,
      numaNode: 0,
      driver: 'hv_netvsc',
      iface: 'eth1',
      uioNumber: null,
      mapSizes: null,
      recvGpadl: null,
      sendGpadl: null,
      subchannelCount: 0,
      channels: [{ relid: 15, subchannelId: 0, monitorId: 4, ringSize: null }],
    },
    {
      uuid: 'f8b3781b-1e82-4818-a1c3-63d806ec15bb',
      classId: STORVSC_CLASS_ID,
      isNetvsc: false,
      relid: 2,
      monitorId: null,
      numaNode: -1,
      driver: 'hv_storvsc',
      iface: null,
      uioNumber: null,
      mapSizes: null,
      recvGpadl: null,
      sendGpadl: null,
      subchannelCount: 0,
      channels: [{ relid: 2, subchannelId: 0, monitorId: null, ringSize: null }],
    },
  ]
  t.deepEqual(devices, expected)
  // The facade returns exactly what the addon returns.
  t.deepEqual(native.listDevices({ root }), expected)
})

test('upper-case and braced uuids are normalised; devices come back sorted by uuid', (t) => {
  const root = fs.mkdtempSync(path.join(scratch, 'case-'))
  const nic = (uuid: string, relid: number, uio: number): FakeDevice => ({
    uuid,
    classId: NETVSC_CLASS_ID.toUpperCase(),
    relid,
    monitorId: relid,
    driver: 'uio_hv_generic',
    // Every map a different size, so a swapped field cannot go unnoticed.
    uio: {
      number: uio,
      maps: nicMaps({ rings: 8 * 4096, recv: 65536, send: 32768 }, 7, 8).map((m) =>
        m.name === 'monitor_page' ? { ...m, size: 8192 } : m,
      ),
    },
    channels: [{ relid, subchannelId: 0 }],
  })
  writeFakeDevice(root, nic('BBBBBBBB-0000-4000-8000-000000000002', 21, 1))
  writeFakeDevice(root, nic('aaaaaaaa-0000-4000-8000-000000000001', 20, 0))
  const devices = listDevices({ root })
  t.deepEqual(
    devices.map((d) => [d.uuid, d.classId, d.uioNumber, d.relid]),
    [
      ['aaaaaaaa-0000-4000-8000-000000000001', NETVSC_CLASS_ID, 0, 20],
      ['bbbbbbbb-0000-4000-8000-000000000002', NETVSC_CLASS_ID, 1, 21],
    ],
  )
  t.deepEqual(devices[0]?.mapSizes, { rings: 32768, intPage: 4096, monitorPage: 8192, recv: 65536, send: 32768 })
  t.is(devices[1]?.recvGpadl, 7)
  t.is(devices[1]?.sendGpadl, 8)
})

test('a root with no vmbus gives an empty list', (t) => {
  const empty = fs.mkdtempSync(path.join(scratch, 'empty-'))
  t.deepEqual(listDevices({ root: empty }), [])
  t.deepEqual(listDevices({ root: path.join(empty, 'does-not-exist') }), [])
})

test('a broken tree throws NetvscError with a stable code naming the bad file', (t) => {
  const badRelid = writeFakeTree(scratch)
  const dev = path.join(badRelid, 'sys/bus/vmbus/devices', sampleDevices()[0]!.uuid)
  fs.writeFileSync(path.join(dev, 'id'), 'fourteen\n')
  const err = expectNetvscError(t, () => listDevices({ root: badRelid }), 'ERR_NETVSC_SYSFS_PARSE', path.join(dev, 'id'))
  t.is((err.cause as { code?: unknown }).code, 'ERR_NETVSC_SYSFS_PARSE')

  const noClass = writeFakeTree(scratch)
  const other = path.join(noClass, 'sys/bus/vmbus/devices', sampleDevices()[2]!.uuid)
  fs.rmSync(path.join(other, 'class_id'))
  expectNetvscError(t, () => listDevices({ root: noClass }), 'ERR_NETVSC_SYSFS_MISSING', path.join(other, 'class_id'))

  const badGpadl = writeFakeTree(scratch)
  const nicDev = path.join(badGpadl, 'sys/bus/vmbus/devices', sampleDevices()[0]!.uuid)
  fs.writeFileSync(path.join(nicDev, 'uio/uio3/maps/map3/name'), 'recv:0x10\n')
  expectNetvscError(t, () => listDevices({ root: badGpadl }), 'ERR_NETVSC_SYSFS_PARSE', 'recv:0x10')
})

test('bad arguments throw ERR_NETVSC_INVALID_ARG', (t) => {
  expectNetvscError(t, () => listDevices({ root: '' }), 'ERR_NETVSC_INVALID_ARG', 'root')
  expectNetvscError(t, () => listDevices({ root: 42 } as unknown as { root: string }), 'ERR_NETVSC_INVALID_ARG', 'string')
  expectNetvscError(t, () => listDevices(null as unknown as {}), 'ERR_NETVSC_INVALID_ARG', 'object')
  // The addon itself rejects a non-string root too (for callers that bypass the facade).
  const raw = t.throws(() => native.listDevices({ root: 42 } as unknown as { root: string }))
  t.regex(raw?.message ?? '', /String/)
})

test('CLI list --json prints the same devices as the API', (t) => {
  const root = writeFakeTree(scratch)
  const r = runCli(['list', '--root', root, '--json'])
  t.is(r.status, 0, r.stderr)
  t.is(r.stderr, '')
  t.deepEqual(JSON.parse(r.stdout), listDevices({ root }))
})

test('CLI list prints one table row per device', (t) => {
  const root = writeFakeTree(scratch)
  const r = runCli(['list', '--root', root])
  t.is(r.status, 0, r.stderr)
  const lines = r.stdout.trimEnd().split('\n')
  t.is(lines.length, 4)
  t.regex(lines[0] ?? '', /^UUID\s+KIND\s+RELID\s+DRIVER\s+NODE\s+SUBCH\s+RINGS\s+RECV\s+SEND\s+GPADL\(R\/S\)$/)
  t.deepEqual(lines[1]?.split(/\s+/), [
    '4c1b6a5e-9f0d-4d4c-8f6b-2b1d3c5e7a90', 'netvsc', '14', 'uio_hv_generic', 'uio3', '1', '512K', '16M', '1M', '0xe1e10/0xe1e11',
  ])
  t.deepEqual(lines[2]?.split(/\s+/), ['7d2a9c10-3e4f-4b6a-9d8e-0f1e2d3c4b5a', 'netvsc', '15', 'hv_netvsc', 'eth1', '0', '-', '-', '-', '-'])
  t.deepEqual(lines[3]?.split(/\s+/), ['f8b3781b-1e82-4818-a1c3-63d806ec15bb', 'other', '2', 'hv_storvsc', '-', '0', '-', '-', '-', '-'])
})

test('CLI --help and no command print usage and exit 0', (t) => {
  for (const args of [['--help'], [], ['list', '--help']]) {
    const r = runCli(args)
    t.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`)
    t.regex(r.stdout, /^Usage: netvsc <command>/)
    t.regex(r.stdout, /--root DIR/)
  }
})

test('CLI bad arguments exit 2 with a one-line reason', (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['list', '--bogus'], /--bogus/],
    [['list', '--root'], /--root/],
    [['list', '--root', ''], /--root/],
    [['list', 'extra'], /extra/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ]
  for (const [args, reason] of cases) {
    const r = runCli(args)
    t.is(r.status, 2, args.join(' '))
    t.is(r.stdout, '', args.join(' '))
    t.regex(r.stderr, /^netvsc: .+\n$/, args.join(' '))
    t.regex(r.stderr, reason)
  }
})

test('CLI on a broken tree exits 1 and prints the error code', (t) => {
  const root = writeFakeTree(scratch)
  const dev = path.join(root, 'sys/bus/vmbus/devices', sampleDevices()[1]!.uuid)
  fs.writeFileSync(path.join(dev, 'class_id'), '{not-a-guid}\n')
  const r = runCli(['list', '--root', root, '--json'])
  t.is(r.status, 1)
  t.is(r.stdout, '')
  t.regex(r.stderr, /^netvsc: ERR_NETVSC_SYSFS_PARSE: .*class_id/)
})
