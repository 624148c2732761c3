/** Process lifetime, in spawned processes (a hang or crash there cannot hide): an open device keeps the process
 * alive through its event thread until unref(); after unref() the process exits on its own, cleanly. */
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { repo, scratchDir } from './helpers.js'

function script(unref: boolean): string {
  return `
    const { Emulator, openSync: open } = require(${JSON.stringify(path.join(repo, 'src/index.ts'))})
    const emu = new Emulator({ dir: ${JSON.stringify(scratchDir('exit'))}, maxQueues: 1 })
    const dev = open(emu.uuid, { root: emu.dir, timeoutMs: 5000 })
    dev.on('link', () => {})
    ${unref ? 'dev.unref()' : ''}
    process.on('exit', (c) => process.stdout.write('exit ' + c + '\\n'))
    console.log('opened', dev.info().mac)
  `
}

function child(unref: boolean, timeout: number): { status: number | null; signal: string | null; stdout: string; stderr: string; ms: number } {
  const t0 = Date.now()
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script(unref)], { cwd: repo, encoding: 'utf8', timeout, killSignal: 'SIGKILL' })
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 }
}

test('after unref() the process exits by itself with status 0', (t) => {
  const r = child(true, 60_000)
  t.is(r.signal, null, r.stderr)
  t.is(r.status, 0, r.stderr)
  t.regex(r.stdout, /opened 00:15:5d:00:00:01\nexit 0\n/)
})

test('without unref() the open device keeps the process alive', async (t) => {
  // Wait for the child to report the open device (however long a loaded machine takes to get there), then check it
  // is still running a while later: a fixed overall timeout failed when start-up alone took longer than it.
  const c = spawn(process.execPath, ['--import', 'tsx', '-e', script(false)], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  c.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<void>((r) => c.once('exit', () => r()))
  try {
    const until = Date.now() + 60_000
    while (!/opened/.test(stdout) && c.exitCode === null && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
    t.regex(stdout, /opened/, stderr)
    await new Promise((r) => setTimeout(r, 2000))
    t.is(c.exitCode, null, 'still running 2 s after opening')
    t.notRegex(stdout, /exit/)
  } finally {
    c.kill('SIGKILL')
    await exited
  }
})
