/**
 * The service-facing API: open() off the event loop (a silent host, an AbortSignal), typed events (a compile-fail
 * fixture), and the telemetry page seen from other processes: `netvsc stats`/`xstats` of a running owner, the
 * Prometheus exporter scraped with fetch, `dev.metrics()`, and `netvsc capture` of a running owner read by tshark.
 */
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { DESC_WORDS, META_WORDS, NetvscError, claimedQueueCount, open, readTelemetry, requestCapture } from '../src/index.js'
import { MAC, emulator, repo, scratchDir, udpFrame, waitFor } from './helpers.js'

const cli = path.join(repo, 'src/cli.ts')

type CliResult = { status: number | null; stdout: string; stderr: string }

/** Starts the CLI in a child process without blocking this one (the owner must keep polling meanwhile). */
function startCli(args: string[], timeoutMs = 60_000): { proc: ReturnType<typeof spawn>; done: Promise<CliResult>; out: () => string } {
  const proc = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo })
  let stdout = ''
  const done = new Promise<CliResult>((resolve) => {
    let stderr = ''
    proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()))
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
    proc.on('close', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
  return { proc, done, out: () => stdout }
}

const runCli = (args: string[], timeoutMs = 60_000): Promise<CliResult> => startCli(args, timeoutMs).done

test.serial('open() against a silent host: the event loop keeps ticking through the 3 s bring-up, then ERR_NETVSC_TIMEOUT', async (t) => {
  const { emu, dir, dispose } = emulator({ silent: true })
  try {
    let ticks = 0
    const timer = setInterval(() => ticks++, 100)
    const t0 = Date.now()
    const err = await t.throwsAsync(open(emu.uuid, { root: dir, timeoutMs: 3000 }), { instanceOf: NetvscError })
    clearInterval(timer)
    t.is(err?.code, 'ERR_NETVSC_TIMEOUT')
    t.regex(err?.message ?? '', /NVSP INIT/)
    t.log(`bring-up failed after ${Date.now() - t0} ms; the 100 ms interval ticked ${ticks} times meanwhile`)
    // A blocked loop would not have ticked at all.
    t.true(ticks >= 2, `ticks ${ticks}`)
  } finally {
    dispose()
  }
})

test.serial('open() with an AbortSignal: abort rejects with ERR_NETVSC_ABORTED, leaves no claim, the device opens again', async (t) => {
  const { emu, dir, dispose } = emulator({ silent: true })
  try {
    const claimed = claimedQueueCount()
    const ac = new AbortController()
    const p = open(emu.uuid, { root: dir, timeoutMs: 60_000, signal: ac.signal })
    setTimeout(() => ac.abort(new Error('shutting down')), 200)
    const err = await t.throwsAsync(p, { instanceOf: NetvscError })
    t.is(err?.code, 'ERR_NETVSC_ABORTED')
    t.is((err?.cause as Error | undefined)?.message, 'shutting down')
    t.is(claimedQueueCount(), claimed)
    // Already aborted: rejected without touching the device.
    t.is((await t.throwsAsync(open(emu.uuid, { root: dir, signal: AbortSignal.abort() }), { instanceOf: NetvscError }))?.code, 'ERR_NETVSC_ABORTED')
    // The half-open device was torn down: a new bring-up gets as far as the host again (which stays silent).
    const again = await t.throwsAsync(open(emu.uuid, { root: dir, timeoutMs: 300 }), { instanceOf: NetvscError })
    t.is(again?.code, 'ERR_NETVSC_TIMEOUT')
  } finally {
    dispose()
  }
  // And on a host that answers, an unaborted signal changes nothing.
  const live = emulator()
  try {
    const ac = new AbortController()
    using dev = await open(live.emu.uuid, { root: live.dir, timeoutMs: 5000, signal: ac.signal })
    ac.abort()
    t.false(dev.closed)
    t.is((await dev.link()).up, true)
    await dev.setPromiscuous(true)
    t.true(dev.promiscuous)
    t.is(live.emu.stats().packetFilter & 0x20, 0x20, 'the host has the promiscuous bit')
    await dev.setAllMulticast(false)
    t.false(dev.allMulticast)
  } finally {
    live.dispose()
  }
})

test('typed events: a misspelled event name or a wrong payload fails tsc (compile-fail fixture)', (t) => {
  const fixture = path.join(repo, '__test__/fixtures/typed-events')
  const ok = spawnSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', fixture], { encoding: 'utf8' })
  t.is(ok.status, 0, ok.stdout + ok.stderr)
  // Without the @ts-expect-error lines the same file must not compile, naming the misspelled event.
  const dir = scratchDir('tsc')
  const src = fs.readFileSync(path.join(fixture, 'events.ts'), 'utf8').replace(/^\s*\/\/ @ts-expect-error.*$/gm, '')
  fs.writeFileSync(path.join(dir, 'events.ts'), src.replaceAll('../../../src/index.js', path.join(repo, 'src/index.js')))
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({ extends: path.join(repo, 'tsconfig.json'), compilerOptions: { typeRoots: [path.join(repo, 'node_modules/@types')] }, include: ['events.ts', path.join(repo, 'binding.d.ts')] }),
  )
  const bad = spawnSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', dir], { encoding: 'utf8', cwd: repo })
  t.not(bad.status, 0)
  // Exactly the lines that carried a directive fail (the directive lines were blanked, so numbers hold).
  const expected = fs
    .readFileSync(path.join(fixture, 'events.ts'), 'utf8')
    .split('\n')
    .flatMap((l, i) => (/^\s*\/\/ @ts-expect-error/.test(l) ? [i + 2] : []))
  const failed = [...bad.stdout.matchAll(/events\.ts\((\d+),\d+\): error TS/g)].map((m) => Number(m[1]))
  t.deepEqual(failed, expected, bad.stdout)
})

/** An owner process stand-in: this test's device, sending frames over loopback and receiving them back. */
async function traffic(dev: Awaited<ReturnType<typeof open>>, frames: number): Promise<number> {
  const q = dev.queue(0)
  const f = udpFrame(128, MAC)
  const n = 32
  const buf = Buffer.concat(Array.from({ length: n }, () => Buffer.from(f)))
  const lens = new Uint32Array(n).fill(128)
  const meta = new Uint32Array(n * 4)
  const rbuf = new Uint8Array(n * 2048)
  const rlens = new Uint32Array(n)
  const rmeta = new Uint32Array(n * 4)
  let sent = 0
  let got = 0
  while (sent < frames) {
    sent += q.txBurst(buf, lens, meta, Math.min(n, frames - sent))
    got += q.rxBurst(rbuf, rlens, rmeta)
    await new Promise((r) => setImmediate(r))
  }
  const until = Date.now() + 5000
  while (got < sent && Date.now() < until) {
    got += q.rxBurst(rbuf, rlens, rmeta)
    await new Promise((r) => setTimeout(r, 1))
  }
  return got
}

test.serial('telemetry: stats/xstats of a running owner from another process, the exporter scraped with fetch, dev.metrics()', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    t.is(dev.telemetryPath, path.join(dir, 'run/netvsc', `${emu.uuid}.telemetry`))
    const got = await traffic(dev, 1000)
    t.is(got, 1000)
    const s = dev.stats()
    await waitFor('the next publish', 5000, () => readTelemetry(emu.uuid, { root: dir }).port.ipackets === s.ipackets)
    const page = readTelemetry(emu.uuid, { root: dir })
    t.is(page.pid, process.pid)
    t.true(page.alive)
    t.deepEqual(page.port, s, 'the page holds what the owner counts')
    t.is(page.queues[0]?.tx.good_packets, 1000)
    t.is(page.link.up, true)

    const stats = await runCli(['stats', emu.uuid, '--root', dir, '--json'])
    t.is(stats.status, 0, stats.stderr)
    const j = JSON.parse(stats.stdout) as { source: string; pid: number; port: typeof s; queues: Array<{ rx: { good_packets: number } }> }
    t.is(j.source, 'telemetry')
    t.is(j.pid, process.pid)
    t.deepEqual(j.port, s)
    t.is(j.queues[0]?.rx.good_packets, 1000)
    t.is(dev.stats().ipackets, s.ipackets, 'reading the page did not disturb the owner')
    const xs = await runCli(['xstats', emu.uuid, '--root', dir])
    t.is(xs.status, 0, xs.stderr)
    t.regex(xs.stdout, /tx_q0_good_packets\s+1000/)

    // --watch: rates per queue while the owner keeps sending.
    const watch = startCli(['stats', emu.uuid, '--root', dir, '--watch', '--interval', '300', '--json'], 60_000)
    // Keep sending until the watcher has printed a rate measured while frames flowed.
    const sending = (o: string) => o.split('\n').some((l) => /"txPps":[1-9]/.test(l))
    const until = Date.now() + 30_000
    while (!sending(watch.out()) && Date.now() < until) await traffic(dev, 256)
    // The owner's lock file (one owner per device) lives beside the page.
    const pages = fs.readdirSync(path.join(dir, 'run/netvsc')).filter((f) => f.endsWith('.telemetry'))
    t.deepEqual(pages, [`${emu.uuid}.telemetry`])

    // The exporter: a real HTTP server in another process, scraped with fetch.
    const exporter = spawn(process.execPath, ['--import', 'tsx', cli, 'metrics', '--listen', '127.0.0.1:0', '--root', dir], { cwd: repo })
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = ''
        exporter.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          const m = /serving (http:\/\/\S+)/.exec(out)
          if (m?.[1]) resolve(m[1])
        })
        exporter.on('close', (c) => reject(new Error(`exporter exited ${c}`)))
      })
      const res = await fetch(url)
      t.is(res.status, 200)
      t.regex(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
      const body = await res.text()
      t.log(body.split('\n').slice(0, 8).join('\n'))
      const now = dev.stats()
      const line = (name: string) => new RegExp(`^${name}\\{device="${emu.uuid}"\\} (\\d+)$`, 'm').exec(body)?.[1]
      await waitFor('a publish after the traffic', 5000, () => readTelemetry(emu.uuid, { root: dir }).port.opackets === now.opackets)
      const body2 = await (await fetch(url)).text()
      t.is(new RegExp(`^netvsc_tx_packets_total\\{device="${emu.uuid}"\\} (\\d+)$`, 'm').exec(body2)?.[1], String(now.opackets))
      t.truthy(line('netvsc_rx_packets_total'))
      t.regex(body2, new RegExp(`^netvsc_queue_stat_total\\{device="${emu.uuid}",queue="0",direction="tx",stat="good_packets"\\} ${now.opackets}$`, 'm'))
      t.regex(body2, new RegExp(`^netvsc_link_up\\{device="${emu.uuid}"\\} 1$`, 'm'))
      // Device-level xstats travel too (hv_*, vf_*), with the values dev.xstats() gives.
      const x = dev.xstats()
      t.is(typeof x.hv_unknown_completions, 'number')
      t.regex(body2, new RegExp(`^netvsc_device_xstats_total\\{device="${emu.uuid}",name="hv_unknown_completions"\\} ${String(x.hv_unknown_completions)}$`, 'm'))
      t.regex(body2, new RegExp(`^netvsc_device_xstats_total\\{device="${emu.uuid}",name="vf_switches"\\} 0$`, 'm'))
      t.is((await fetch(new URL('/nope', url))).status, 404)
      t.regex(dev.metrics(), new RegExp(`^netvsc_tx_packets_total\\{device="${emu.uuid}"\\} ${now.opackets}$`, 'm'))
    } finally {
      exporter.kill('SIGINT')
    }
    const w = await Promise.race([watch.done, new Promise<null>((r) => setTimeout(() => r(null), 100))])
    t.is(w, null, 'watch keeps running until interrupted')
    watch.proc.kill('SIGINT')
    const done = await watch.done
    const lines = done.stdout.trim().split('\n').map((l) => JSON.parse(l) as { rates?: { txPps: number; queues: Array<{ txPps: number; txBps: number }> } })
    t.true(lines.length >= 2, done.stderr)
    t.true(lines.some((l) => (l.rates?.txPps ?? 0) > 0 && (l.rates?.queues[0]?.txBps ?? 0) > 0), 'rates per queue while the owner sends')
  } finally {
    dispose()
  }
  t.false(fs.existsSync(path.join(dir, 'run/netvsc', `${emu.uuid}.telemetry`)), 'close removed the page')
})

function tshark(file: string, fields: string[]): string[][] {
  const r = spawnSync('tshark', ['-n', '-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`tshark failed (${r.status}): ${r.stderr}`)
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => l.split('\t'))
}

test.serial('capture of a running owner through its page: pcapng, both directions flagged, ns timestamps, count limit; tshark reads it', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const file = path.join(scratchDir('cap'), 'owner.pcapng')
    const child = runCli(['capture', emu.uuid, '--root', dir, '--pcap', file, '--count', '40', '--json'])
    // The owner keeps working while the capture command asks for (and waits on) the capture.
    let sent = 0
    const until = Date.now() + 30_000
    let result: Awaited<typeof child> | null = null
    void child.then((r) => (result = r))
    while (result === null && Date.now() < until) {
      sent += await traffic(dev, 32)
    }
    const r = await child
    t.is(r.status, 0, r.stderr)
    const j = JSON.parse(r.stdout) as { frames: number; owner: number }
    t.is(j.frames, 40)
    t.is(j.owner, process.pid)
    t.true(sent >= 40)
    const rows = tshark(file, ['frame.len', 'frame.packet_flags_direction', 'frame.time_epoch'])
    t.is(rows.length, 40)
    const dirs = new Set(rows.map((x) => String(Number(x[1]))))
    t.deepEqual([...dirs].sort(), ['1', '2'], 'inbound (1) and outbound (2) flags')
    t.true(rows.every((x) => x[0] === '128'))
    t.regex(rows[0]?.[2] ?? '', /\.\d{9}$/, 'nanosecond timestamps')
    const page = readTelemetry(emu.uuid, { root: dir })
    t.is(page.capture.id, 0, 'the capture ended')
  } finally {
    dispose()
  }
})

test.serial('capture of a running owner mirrors rxBurstZeroCopy bursts too (views read from the receive buffer, copies from buf); tshark reads them', async (t) => {
  const { emu, dir, dispose } = emulator({ backend: 'loopback' })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000, devargs: 'rx_extmbuf_enable=1,rx_copybreak=64' })
    const q = dev.queue(0)
    const file = path.join(scratchDir('capzc'), 'zc.pcapng')
    const id = requestCapture(emu.uuid, file, { root: dir })
    await waitFor('the owner starts the capture', 5000, () => readTelemetry(emu.uuid, { root: dir }).capture.id === id)
    // 60-byte frames are copied into `buf`, longer ones are views into the receive region; each has its own IP id.
    const sizes = Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? 60 : 100 + i))
    const frames = sizes.map((s, i) => {
      const f = udpFrame(s, MAC, i)
      f[18] = 0x40
      f[19] = i
      return f
    })
    const buf = Buffer.concat(frames.map((f) => Buffer.from(f)))
    const lens = Uint32Array.from(sizes)
    const meta = new Uint32Array(sizes.length * META_WORDS)
    let sent = 0
    while (sent < sizes.length) {
      const off = sizes.slice(0, sent).reduce((a, b) => a + b, 0)
      sent += q.txBurst(buf.subarray(off), lens.subarray(sent), meta.subarray(sent * META_WORDS), sizes.length - sent)
    }
    const descs = new Uint32Array(32 * DESC_WORDS)
    const rmeta = new Uint32Array(32 * META_WORDS)
    const copies = new Uint8Array(32 * 128)
    let got = 0
    let views = 0
    await waitFor('loopback frames', 5000, () => {
      const n = q.rxBurstZeroCopy(descs, rmeta, copies)
      for (let i = 0; i < n; i++) views += (descs[i * DESC_WORDS + 3] ?? 0) & 1
      q.release(descs, n)
      got += n
      return got >= sizes.length
    })
    t.true(views > 0 && views < got, `${views} views and ${got - views} copies`)
    const stop = requestCapture(emu.uuid, null, { root: dir })
    await waitFor('the owner stops the capture', 5000, () => readTelemetry(emu.uuid, { root: dir }).capture.done === stop || readTelemetry(emu.uuid, { root: dir }).capture.id === 0)
    const rows = tshark(file, ['frame.len', 'frame.packet_flags_direction', 'ip.id'])
    const inbound = rows.filter((x) => Number(x[1]) === 1)
    const outbound = rows.filter((x) => Number(x[1]) === 2)
    t.is(outbound.length, sizes.length)
    t.is(inbound.length, sizes.length, 'every zero-copy burst frame is in the capture')
    t.deepEqual(inbound.map((x) => Number(x[0])), sizes, 'lengths in order')
    t.deepEqual(inbound.map((x) => Number(x[2])), sizes.map((_, i) => 0x4000 + i), 'each frame\'s own bytes')
  } finally {
    dispose()
  }
})
