/**
 * What a collected handle does, in a spawned process with --expose-gc: a queue that nothing references any more is
 * finalized, its claim is released (the registry count drops back), and one NETVSC_COLLECTED_OPEN warning is emitted
 * however many queues were collected; a queue closed before it became unreachable warns about nothing.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { repo, scratchDir } from './helpers.js'

function child(closeFirst: boolean): { before: number; after: number; warnings: string[] } {
  const script = `
    const { Emulator, openSync: open, openQueue, claimedQueueCount } = require(${JSON.stringify(path.join(repo, 'src/index.ts'))})
    const emu = new Emulator({ dir: ${JSON.stringify(scratchDir('gc'))}, maxQueues: 2 })
    const dev = open(emu.uuid, { root: emu.dir, queues: 2, timeoutMs: 5000 })
    const warnings = []
    process.on('warning', (w) => warnings.push(w.code ?? w.name))
    const base = claimedQueueCount()
    ;(() => {
      const qs = [openQueue(emu.uuid, 0, { root: emu.dir }), openQueue(emu.uuid, 1, { root: emu.dir })]
      if (${closeFirst}) for (const q of qs) q.close()
    })()
    const before = claimedQueueCount() - base
    ;(async () => {
      const until = Date.now() + 5000
      while (Date.now() < until && (claimedQueueCount() > base || (!${closeFirst} && warnings.length === 0))) {
        globalThis.gc()
        await new Promise((r) => setTimeout(r, 20))
      }
      // Give a late warning the chance to show, so "exactly one" means it.
      for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)) }
      process.stdout.write(JSON.stringify({ before, after: claimedQueueCount() - base, warnings }) + '\\n')
      dev.close()
      emu.stop()
    })()
  `
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '-e', script], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 90_000,
    killSignal: 'SIGKILL',
  })
  if (r.status !== 0) throw new Error(`child exited ${r.status} ${r.signal}: ${r.stderr}`)
  const line = r.stdout.trim().split('\n').pop() ?? ''
  return JSON.parse(line)
}

test('collected open queues release their claims and warn once', (t) => {
  const r = child(false)
  t.is(r.before, 2, 'the child claimed two queues')
  t.is(r.after, 0, 'both claims released by collection')
  t.deepEqual(r.warnings, ['NETVSC_COLLECTED_OPEN'])
})

test('queues closed before they became unreachable warn about nothing', (t) => {
  const r = child(true)
  t.is(r.before, 0, 'closed queues hold no claim')
  t.is(r.after, 0)
  t.deepEqual(r.warnings, [])
})
