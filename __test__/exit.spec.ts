/** Process lifetime, in spawned processes (a hang or crash there cannot hide): an open device keeps the process
 * alive through its event thread until unref(); after unref() the process exits on its own, cleanly. */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { repo, scratchDir } from './helpers.js'

function child(unref: boolean, timeout: number): { status: number | null; signal: string | null; stdout: string; stderr: string; ms: number } {
  const script = `
    const { Emulator, open } = require(${JSON.stringify(path.join(repo, 'src/index.ts'))})
    const emu = new Emulator({ dir: ${JSON.stringify(scratchDir('exit'))}, maxQueues: 1 })
    const dev = open(emu.uuid, { root: emu.dir, timeoutMs: 5000 })
    dev.on('link', () => {})
    ${unref ? 'dev.unref()' : ''}
    process.on('exit', (c) => process.stdout.write('exit ' + c + '\\n'))
    console.log('opened', dev.info().mac)
  `
  const t0 = Date.now()
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: repo, encoding: 'utf8', timeout, killSignal: 'SIGKILL' })
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 }
}

test('after unref() the process exits by itself with status 0', (t) => {
  const r = child(true, 20_000)
  t.is(r.signal, null, r.stderr)
  t.is(r.status, 0, r.stderr)
  t.regex(r.stdout, /opened 00:15:5d:00:00:01\nexit 0\n/)
})

test('without unref() the open device keeps the process alive', (t) => {
  const r = child(false, 4000)
  t.is(r.signal, 'SIGKILL', 'killed by the timeout, not exited')
  t.regex(r.stdout, /opened/)
  t.notRegex(r.stdout, /exit/)
})
