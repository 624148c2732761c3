/**
 * 3,000 open/close cycles through the Node API in a child process (--expose-gc, so the baseline and the end are
 * taken after collection and once finalizers have run): fds, mappings and threads back where they started, RSS
 * outside the device's own shared files grows less than 2 MB, and the emulator's filter history stays bounded.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { repo } from './helpers.js'

test('3,000 open/close cycles through the Node API leak no memory, fds, mappings or threads', (t) => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(repo, '__test__/fixtures/cycles.ts'), '3000', '200'], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 280_000,
  })
  t.is(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
    cycles: number
    before: { fds: number; maps: number; threads: number; rss: number; device: number }
    after: { fds: number; maps: number; threads: number; rss: number; device: number }
    filterChanges: number
    filters: number
  }
  const { before: b, after: a } = out
  t.log(`${out.cycles} cycles: fds ${b.fds}->${a.fds}, maps ${b.maps}->${a.maps}, threads ${b.threads}->${a.threads}, rss ${b.rss}->${a.rss} KiB (device shared memory ${b.device}->${a.device} KiB)`)
  t.is(a.fds, b.fds, 'file descriptors leaked')
  t.true(a.maps <= b.maps + 2, `mappings leaked: ${b.maps} -> ${a.maps}`)
  t.true(a.threads <= b.threads, `threads leaked: ${b.threads} -> ${a.threads}`)
  // glibc keeps what a closed device freed in its arenas (heaptrack finds nothing outstanding); the addon trims
  // the heap shortly after closes and finalizations (vmbus_uio::heap), so RSS is flat.
  t.true(a.rss - b.rss < 2048, `RSS grew ${a.rss - b.rss} KiB over ${out.cycles} cycles (${b.rss} -> ${a.rss} KiB)`)
  t.true(out.filters <= 64, `the host's filter history holds ${out.filters} entries`)
})
