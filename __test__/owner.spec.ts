/** One owner per device across processes, through the Node API: a spawned child opens the device; a second open
 * here fails with ERR_NETVSC_DEVICE_BUSY naming the child's pid; after SIGKILL of the child the device opens again.
 * A directory a live emulator serves is refused (here and by `netvsc emulate` in another process). */
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { Emulator, NetvscError, open } from '../src/index.js'
import { emulator, repo, scratchDir } from './helpers.js'

test.serial('a device held by another process is busy (naming its pid) until that process is killed', async (t) => {
  const { emu, dir, dispose } = emulator()
  try {
    const script = `
      const { openSync } = require(${JSON.stringify(path.join(repo, 'src/index.ts'))})
      const dev = openSync(${JSON.stringify(emu.uuid)}, { root: ${JSON.stringify(dir)}, timeoutMs: 5000 })
      console.log('holding ' + process.pid + ' ' + dev.info().mac)
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { cwd: repo })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child never held the device: ${out} ${err}`)), 30_000)
      child.stdout.on('data', () => /holding \d+/.test(out) && (clearTimeout(timer), resolve()))
      child.on('exit', (c) => reject(new Error(`child exited ${c}: ${err}`)))
    })
    t.regex(out, new RegExp(`holding ${child.pid} `))
    const busy = await t.throwsAsync(open(emu.uuid, { root: dir, timeoutMs: 5000 }), { instanceOf: NetvscError })
    t.is(busy?.code, 'ERR_NETVSC_DEVICE_BUSY')
    t.regex(busy?.message ?? '', new RegExp(`in use by pid ${child.pid}\\b`))
    const closed = new Promise((r) => child.on('close', r))
    child.kill('SIGKILL')
    await closed
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    t.is(dev.info().queues, 1, 'opened once the owner died')
  } finally {
    dispose()
  }
})

test.serial('a directory served by a live emulator is refused, in process and by netvsc emulate', (t) => {
  const dir = scratchDir('owner-emu')
  const emu = new Emulator({ dir, maxQueues: 1 })
  try {
    const again = t.throws(() => new Emulator({ dir, maxQueues: 1 }), { instanceOf: NetvscError })
    t.is(again?.code, 'ERR_NETVSC_DEVICE_BUSY')
    t.regex(again?.message ?? '', new RegExp(`served by the emulator in pid ${process.pid}\\b`))
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'emulate', '--dir', dir], {
      cwd: repo,
      encoding: 'utf8',
      timeout: 30_000,
    })
    t.is(r.status, 1, r.stderr)
    t.regex(r.stderr, new RegExp(`^netvsc: ERR_NETVSC_DEVICE_BUSY: .*pid ${process.pid}\\b`))
  } finally {
    emu.stop()
  }
})
