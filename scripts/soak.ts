/**
 * `npm run soak [-- --seconds N]` (default 600): the driver in Node against the in-process emulator (loopback
 * backend, 2 queues) at full rate, the link flapping every 5 s and a ring fault (`oversized-index`, seeded) every
 * minute, which the driver reports ('error') and recovers from ('recovered'). At the end every counter reconciles
 * exactly — driver tx = host rx; host rx = reflected + loopback overflow; reflected = host tx + host drops by reason;
 * host tx = driver rx + driver drops by reason + frames a reset took from the guest (`hostToGuestAbandoned`) — and RSS
 * and the fd count are flat after warm-up (< 1 % growth). Prints a table; exits 1 on a mismatch. Run with V8's young
 * generation capped (`--max-semi-space-size=2`, in the npm script): otherwise V8 grows it under this loop's
 * allocation rate and keeps the pages (10–17 MB of anonymous memory, RSS +5–13 %), which is no leak of the driver's.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises'
import { Emulator, META_WORDS, openSync, type NetvscError } from '../src/index.js'

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return def
  const v = Number(process.argv[i + 1])
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive integer`)
  return v
}

const seconds = arg('seconds', 600)
const flapMs = arg('flap-ms', 5000)
const faultMs = arg('fault-ms', 60_000)
const seed0 = arg('seed', 1)
const warmMs = Math.max(10_000, Math.min(60_000, (seconds * 1000) / 2))

const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
const dir = fs.mkdtempSync(path.join(base, 'netvsc-soak-'))
const emu = new Emulator({ dir, maxQueues: 2, backend: 'loopback' })

/**
 * Resident KiB outside the emulated device's own files (its rings and buffers are shared memory both sides touch as
 * traffic walks through them, bounded by the files' size; `deviceKib` reports them).
 */
function rssKib(): number {
  return residency().rss
}
function residency(): { rss: number; device: number } {
  let rss = 0
  let device = 0
  let inDir = false
  for (const l of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const w = l.split(/\s+/)
    const first = w[0] ?? ''
    if (first.includes('-') && !first.endsWith(':')) inDir = (w[5] ?? '').startsWith(dir) || (w[5] ?? '').startsWith('/memfd:hv-emu-') // the emulated device's memory
    else if (first === 'Rss:') {
      const kib = Number(w[1] ?? 0)
      if (inDir) device += kib
      else rss += kib
    }
  }
  return { rss, device }
}
/** Resident KiB by mapping name ('[heap]', 'anon', a file), outside the emulated device's memory. */
function rssByMapping(): Map<string, number> {
  const m = new Map<string, number>()
  let name = ''
  for (const l of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const w = l.split(/\s+/)
    const first = w[0] ?? ''
    if (first.includes('-') && !first.endsWith(':')) name = w.slice(5).join(' ') || 'anon'
    else if (first === 'Rss:' && !name.startsWith(dir) && !name.startsWith('/memfd:hv-emu-')) m.set(name, (m.get(name) ?? 0) + Number(w[1] ?? 0))
  }
  return m
}
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length
/** What each open fd refers to (named when the count grows). */
function fdTargets(): Map<string, string> {
  const m = new Map<string, string>()
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      m.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`))
    } catch {
      // closed in between
    }
  }
  return m
}

/** A 128-byte UDP frame to `mac` on flow `flow` (source port), payload stamped with `n`. */
function frame(mac: number[], flow: number, n: number): Uint8Array {
  const size = 128
  const f = new Uint8Array(size)
  f.set(mac, 0)
  f.set([0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00, 0x45], 6)
  f[16] = (size - 14) >> 8
  f[17] = (size - 14) & 0xff
  f[22] = 64
  f[23] = 17
  f.set([10, 0, 0, 2, 10, 0, 0, 1], 26)
  f[34] = 0x10 + flow
  f[35] = flow
  f[36] = 0x00
  f[37] = 0x50
  f[38] = (size - 34) >> 8
  f[39] = (size - 34) & 0xff
  new DataView(f.buffer).setUint32(42, n)
  return f
}

async function main(): Promise<number> {
  const dev = openSync(emu.uuid, { root: dir, queues: 2, timeoutMs: 10_000 })
  let errors = 0
  let recovered = 0
  const errorWhat = new Map<string, number>()
  dev.on('error', (e: NetvscError & { what?: string }) => {
    errors++
    const k = `${e.code} ${e.what ?? ""} (queue ${(e as { queue?: number }).queue ?? "?"})`.trim()
    errorWhat.set(k, (errorWhat.get(k) ?? 0) + 1)
  })
  dev.on('recovered', () => recovered++)
  let linkEvents = 0
  dev.on('link', () => linkEvents++)
  dev.start()
  const queues = dev.queues()
  const mac = dev.info().mac.split(':').map((h) => Number.parseInt(h, 16))

  const BURST = 32
  const txBufs = queues.map((_, qi) => {
    const buf = new Uint8Array(BURST * 128)
    for (let i = 0; i < BURST; i++) buf.set(frame(mac, qi * 8 + (i % 8), i), i * 128)
    return buf
  })
  const txLens = new Uint32Array(BURST).fill(128)
  const txMeta = new Uint32Array(BURST * META_WORDS)
  const rxBuf = new Uint8Array(256 * 2048)
  const rxLens = new Uint32Array(256)
  const rxMeta = new Uint32Array(256 * META_WORDS)

  let burstErrors = 0
  let flaps = 0
  let faults = 0
  let seed = seed0
  const t0 = Date.now()
  const end = t0 + seconds * 1000
  let nextFlap = t0 + flapMs
  let nextFault = t0 + faultMs
  let warm: { rss: number; fds: number } | null = null
  let warmFds = new Map<string, string>()
  let warmMaps = new Map<string, number>()
  let warmHeap = process.memoryUsage()
  let peakRss = 0
  let nextSample = t0

  while (Date.now() < end) {
    const sliceEnd = Date.now() + 5
    while (Date.now() < sliceEnd) {
      for (let qi = 0; qi < queues.length; qi++) {
        const q = queues[qi]!
        try {
          q.txBurst(txBufs[qi]!, txLens, txMeta, BURST)
          q.rxBurst(rxBuf, rxLens, rxMeta)
        } catch {
          // A queue whose ring failed refuses bursts until 'recovered'.
          burstErrors++
        }
      }
    }
    const now = Date.now()
    if (now >= nextFlap) {
      emu.setLink(false)
      flaps++
      nextFlap += flapMs
      setTimeout(() => emu.setLink(true), 200).unref()
    }
    if (now >= nextFault) {
      emu.injectFault('oversized-index', seed++)
      faults++
      nextFault += faultMs
    }
    if (warm === null && now - t0 >= warmMs) {
      ;(globalThis as { gc?: () => void }).gc?.()
      warm = { rss: rssKib(), fds: fdCount() }
      warmFds = fdTargets()
      warmMaps = rssByMapping()
      warmHeap = process.memoryUsage()
    }
    if (now >= nextSample) {
      peakRss = Math.max(peakRss, rssKib())
      nextSample = now + 1000
    }
    await tick()
  }
  emu.setLink(true)
  // Drain: no more tx; rx until both sides' counters stop moving.
  let last = ''
  for (let still = 0, i = 0; still < 20 && i < 2000; i++) {
    for (const q of queues) {
      try {
        q.pollCompletions()
        while (q.rxBurst(rxBuf, rxLens, rxMeta) > 0) {}
      } catch {
        burstErrors++
      }
    }
    const h = emu.stats().totals
    const s = dev.stats()
    const key = `${h.guestToHostFrames} ${h.hostToGuestFrames} ${s.ipackets} ${s.opackets} ${s.imissed}`
    still = key === last ? still + 1 : 0
    last = key
    await sleep(10)
  }
  // Collect and let finalizers and the addon's heap trim run, until two rounds free nothing more (as at warm-up,
  // where the same loop ran long enough for the steady state).
  let low = Number.POSITIVE_INFINITY
  for (let k = 0, still = 0; k < 40 && still < 2; k++) {
    ;(globalThis as { gc?: () => void }).gc?.()
    await sleep(50)
    const now = rssKib()
    still = now >= low - 64 ? still + 1 : 0
    low = Math.min(low, now)
  }
  const final = { rss: rssKib(), fds: fdCount() }
  const doc = emu.stats() as ReturnType<Emulator['stats']> & { backend?: { reflected?: number; overflow?: number } }
  const host = doc.totals
  const reflected = doc.backend?.reflected ?? 0
  const overflow = doc.backend?.overflow ?? 0
  const drv = dev.stats()
  const hostDrops = host.drops
  const hostDropTotal = Object.values(hostDrops).reduce((a, b) => a + b, 0)
  const driverDrops = { imissed: drv.imissed, ierrors: drv.ierrors }
  // Loopback overflow is a drop reason in the host's totals, but it happens before reflection: it belongs to
  // "host rx = reflected + overflow", not to what reflection fed into the guest's rx.
  const reflectDrops = hostDropTotal - (hostDrops.backendOverflow ?? 0)
  // Sends in flight when a recovery tore the channels down: the host may have taken them, their completions are
  // gone, so the driver counts them as unsettled (never as sent). Driver tx is exact up to those.
  const unsettled = dev.xstats().hv_tx_unsettled ?? 0
  const hostTook = host.guestToHostFrames
  const txCheck = hostTook >= drv.opackets && hostTook <= drv.opackets + unsettled ? hostTook : drv.opackets
  const checks: Array<[string, number, number]> = [
    [`driver tx (+ up to ${unsettled} unsettled) = host rx`, txCheck, hostTook],
    ['host rx = reflected + loopback overflow', host.guestToHostFrames, reflected + overflow],
    ['reflected = host tx + host drops (before reflection excluded)', reflected, host.hostToGuestFrames + reflectDrops],
    // ierrors counts ring errors (no frame behind them), so frames reconcile as rx + missed, plus what a
    // recovery's re-initialisation took away with the old rings (frames handed over, never completed).
    [
      'host tx = driver rx + driver missed + abandoned at a reset',
      host.hostToGuestFrames,
      drv.ipackets + drv.imissed + host.hostToGuestAbandoned,
    ],
  ]
  const w = warm ?? final
  const rssGrowth = w.rss > 0 ? (final.rss - w.rss) / w.rss : 0
  const fdGrowth = w.fds > 0 ? (final.fds - w.fds) / w.fds : 0
  const rows: Array<[string, string]> = [
    ['duration (s)', String(seconds)],
    ['queues', String(queues.length)],
    ['driver tx frames', String(drv.opackets)],
    ['driver rx frames', String(drv.ipackets)],
    ['driver rx missed', String(driverDrops.imissed)],
    ['driver rx errors', String(driverDrops.ierrors)],
    ['host rx frames', String(host.guestToHostFrames)],
    ['host tx frames', String(host.hostToGuestFrames)],
    ['loopback reflected', String(reflected)],
    ['loopback overflow (dropped)', String(overflow)],
    ['host tx abandoned at a reset (guest held them)', String(host.hostToGuestAbandoned)],
    ...Object.entries((doc as { protocolErrors?: Record<string, number> }).protocolErrors ?? {}).map(
      ([k, v]): [string, string] => [`host protocol errors ${k}`, String(v)],
    ),
    ...Object.entries(hostDrops).map(([k, v]): [string, string] => [`host drops ${k}`, String(v)]),
    ['rate (frames/s, tx)', (drv.opackets / seconds).toFixed(0)],
    ['link flaps', String(flaps)],
    ['link events', String(linkEvents)],
    ['ring faults injected', String(faults)],
    ['  not seen (healed by the host first)', String(Math.max(0, faults - errors))],
    ["'error' events", String(errors)],
    ...[...errorWhat].map(([k, v]): [string, string] => [`  ${k}`, String(v)]),
    ["'recovered' events", String(recovered)],
    ['bursts refused', String(burstErrors)],
    ['RSS after warm-up / end / peak (KiB)', `${w.rss} / ${final.rss} / ${peakRss}`],
    ['device shared memory resident (KiB)', String(residency().device)],
    ['RSS growth', `${(rssGrowth * 100).toFixed(2)} %`],
    ['JS heap used after warm-up / end (MiB)', `${(warmHeap.heapUsed / 1048576).toFixed(1)} / ${(process.memoryUsage().heapUsed / 1048576).toFixed(1)}`],
    ['fds after warm-up / end', `${w.fds} / ${final.fds}`],
  ]
  let bad = 0
  for (const [name, a, b] of checks) {
    const ok = a === b
    if (!ok) bad++
    rows.push([name, `${a} ${ok ? '=' : '≠'} ${b}${ok ? '' : `  MISMATCH (${a - b})`}`])
  }
  if (rssGrowth >= 0.01) {
    bad++
    const now = rssByMapping()
    const grew = [...new Set([...warmMaps.keys(), ...now.keys()])]
      .map((k): [string, number] => [k, (now.get(k) ?? 0) - (warmMaps.get(k) ?? 0)])
      .filter(([, d]) => Math.abs(d) >= 256)
      .map(([k, d]) => `${k} ${d > 0 ? '+' : ''}${d}`)
    const h = process.memoryUsage()
    const mib = (b: number): string => (b / 1048576).toFixed(1)
    rows.push(['RSS flat', `NO (>= 1 %); by mapping since warm-up (KiB): ${grew.join(', ') || 'no single mapping'}`])
    rows.push([
      '  JS heap used / total (MiB)',
      `${mib(warmHeap.heapUsed)} -> ${mib(h.heapUsed)} / ${mib(warmHeap.heapTotal)} -> ${mib(h.heapTotal)}`,
    ])
  }
  if (fdGrowth >= 0.01) {
    bad++
    const added = [...fdTargets()].filter(([fd, t]) => warmFds.get(fd) !== t).map(([fd, t]) => `${fd} → ${t}`)
    rows.push(['fds flat', `NO (>= 1 %); new since warm-up: ${added.join(', ') || 'none'}`])
  }
  // A fault the host's own next commit overwrote before the driver read the index never takes effect; every one
  // the driver saw must end in 'recovered', and at least one must have been seen.
  if (faults > 0 && (errors === 0 || recovered !== errors)) {
    bad++
    rows.push(['every detected fault recovered', `NO (${recovered} recovered, ${errors} errors, ${faults} injected)`])
  }
  const width = Math.max(...rows.map(([k]) => k.length))
  process.stdout.write(`netvsc soak\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}\n`)
  process.stdout.write(bad === 0 ? 'soak: OK\n' : `soak: FAILED (${bad} check(s))\n`)
  dev.close()
  emu.stop()
  fs.rmSync(dir, { recursive: true, force: true })
  return bad === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err)
    fs.rmSync(dir, { recursive: true, force: true })
    process.exit(2)
  },
)
