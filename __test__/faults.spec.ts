/**
 * Fault injection through the Node Emulator wrapper: a ring fault gives the driver's 'error' (ERR_NETVSC_RING) and
 * 'recovered' events, and traffic passes again; the same seed injects the same values; a bad
 * kind is refused. The control socket's `fault` command does the same from `netvsc ctl`.
 */
import test from 'ava'
import * as path from 'node:path'
import { META_WORDS, NetvscError, openSync } from '../src/index.js'
import { MAC, emulator, runCli, udpFrame, waitFor } from './helpers.js'

test.serial('injectFault: a ring fault gives error then recovered; the same seed injects the same values; bad kinds refused', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = openSync(emu.uuid, { root: dir, timeoutMs: 5000 })
    const errors: NetvscError[] = []
    let recovered = 0
    dev.on('error', (e: NetvscError) => errors.push(e))
    dev.on('recovered', () => recovered++)
    dev.start()
    const q = dev.queue(0)
    const [r] = emu.injectFault('unknown-tid', 7)
    t.is(r?.kind, 'unknown-tid')
    t.deepEqual(emu.injectFault('unknown-tid', 7)[0]?.detail, r?.detail, 'the same seed, the same id')
    const buf = new Uint8Array(64 * 2048)
    const lens = new Uint32Array(64)
    const meta = new Uint32Array(64 * META_WORDS)
    q.rxBurst(buf, lens, meta)
    emu.injectFault(['oversized-index'], 3)
    await waitFor('error and recovered', 10_000, () => {
      try {
        q.rxBurst(buf, lens, meta)
      } catch {
        // Refused while the ring is broken.
      }
      return errors.length > 0 && recovered > 0
    })
    t.is(errors[0]?.code, 'ERR_NETVSC_RING')
    // Traffic passes after recovery.
    const f = udpFrame(200, MAC, 9)
    let got = 0
    await waitFor('echo after recovery', 10_000, () => {
      if (got === 0 && q.txBurst(f, Uint32Array.of(f.length), new Uint32Array(META_WORDS), 1) === 1) got = -1
      const n = q.rxBurst(buf, lens, meta)
      for (let i = 0, off = 0; i < n; off += lens[i] ?? 0, i++) {
        if (Buffer.compare(Buffer.from(buf.subarray(off, off + (lens[i] ?? 0))), Buffer.from(f)) === 0) got = 1
      }
      return got === 1
    })
    t.throws(() => emu.injectFault('no-such-fault' as never), { code: 'ERR_NETVSC_INVALID_ARG' })
  } finally {
    dispose()
  }
})

test.serial('netvsc ctl DIR fault KIND SEED reaches the emulator', (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    const sock = path.join(dir, 'ctl.sock')
    emu.serveControl(sock)
    const list = runCli(['ctl', dir, 'fault', 'list'])
    t.is(list.status, 0, list.stderr)
    t.true(list.stdout.includes('withhold-completions'))
    const bad = runCli(['ctl', dir, 'fault', 'nonsense'])
    t.is(bad.status, 1)
    t.true(bad.stdout.includes('unknown fault'))
    const ok = runCli(['ctl', dir, 'fault', 'withhold-subchannels,clear', '5'])
    t.is(ok.status, 0, ok.stdout + ok.stderr)
    t.true(ok.stdout.includes('"kind":"withhold-subchannels"'))
  } finally {
    dispose()
  }
})

test('netvsc emulate --fault refuses unknown kinds and stray fault options (exit 2)', (t) => {
  const bad = runCli(['emulate', '--dir', '/nonexistent/x', '--fault', 'bogus'])
  t.is(bad.status, 2)
  t.true(bad.stderr.includes("option '--fault' takes"))
  const stray = runCli(['emulate', '--dir', '/nonexistent/x', '--fault-seed', '3'])
  t.is(stray.status, 2)
})
