/**
 * `netvsc demo` (and `npm run demo`): an emulated NIC and the driver in this process, no root and no Hyper-V
 * needed. It shows the link-up event, pushes traffic both ways through a loopback host (tx frames come back as rx)
 * with a live progress bar, then prints the per-queue counters, the emulator's own count and the Mpps achieved.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Emulator } from '../emulator.js'
import { open, type LinkEvent } from '../netvsc.js'
import { META_WORDS } from '../meta.js'
import { type Io, intOption, parse, sleep, table } from './common.js'

export const DEMO_HELP = `Usage: netvsc demo [--seconds S] [--queues N] [--size B] [--json]

Starts an emulated Hyper-V NIC and the driver in this process, waits for link up, sends and receives frames
through a loopback host with a progress bar, then prints per-queue statistics and the Mpps achieved.

Options:
  --seconds S   Traffic duration (default 2)
  --queues N    Queue pairs (default 2)
  --size B      Frame size in bytes, 60..1514 (default 64)
  --json        Print the results as JSON (no progress bar)
`

function frame(size: number, mac: number[], flow: number): Uint8Array {
  const f = new Uint8Array(size)
  f.set(mac, 0)
  f.set([0x02, 0, 0, 0, 0, 0x10], 6)
  f.set([0x08, 0x00, 0x45, 0x00], 12)
  const ipLen = size - 14
  f[16] = ipLen >> 8
  f[17] = ipLen & 0xff
  f[22] = 64
  f[23] = 17
  f.set([10, 0, flow & 0xff, 2, 10, 0, 0, 1], 26)
  f[34] = 0x30
  f[35] = flow & 0xff
  f[36] = 0x04
  f[37] = 0xd2
  f[38] = (size - 34) >> 8
  f[39] = (size - 34) & 0xff
  return f
}

/** Frames the emulated host dropped, every reason (loopback overflow included). */
function hostDrops(d: Record<string, number>): number {
  return Object.values(d).reduce((a, b) => a + b, 0)
}

/** Frames the driver dropped on receive (no room, bad packets). */
function driverDrops(queues: ReadonlyArray<{ rxMissed: number; rxErrors: number }>): number {
  return queues.reduce((a, q) => a + q.rxMissed + q.rxErrors, 0)
}

const DROP_NAMES: Record<string, string> = {
  backendOverflow: 'loopback overflow',
  noRxBuffer: 'no rx buffer',
  ringFull: 'rx ring full',
  filtered: 'filtered',
  notReady: 'not ready',
  tooLarge: 'too large',
  linkDown: 'link down',
  txMalformed: 'tx malformed',
  driverMissed: 'driver missed',
}

/** `tx N = rx N + dropped N (loopback overflow N, <other reasons that occurred>) + in flight N`. */
export function reconciliation(sent: number, received: number, drops: Record<string, number>, inFlight: number): string {
  const total = Object.values(drops).reduce((a, b) => a + b, 0)
  const reasons = Object.entries(drops)
    .filter(([k, v]) => v > 0 || k === 'backendOverflow')
    .map(([k, v]) => `${DROP_NAMES[k] ?? k} ${v}`)
  return `tx ${sent} = rx ${received} + dropped ${total} (${reasons.join(', ')}) + in flight ${inFlight}`
}

export async function runDemo(args: string[], io: Io): Promise<number> {
  const { values, help } = parse(
    args,
    { seconds: { type: 'string' }, queues: { type: 'string' }, size: { type: 'string' }, json: { type: 'boolean' } },
    { min: 0, max: 0, names: '' },
  )
  if (help) return (io.out(DEMO_HELP), 0)
  const seconds = intOption('seconds', values.seconds, 1, 3600) ?? 2
  const queues = intOption('queues', values.queues, 1, 8) ?? 2
  const size = intOption('size', values.size, 60, 1514) ?? 64
  const say = (t: string) => values.json || io.out(t)
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  const dir = fs.mkdtempSync(path.join(base, 'netvsc-demo-'))
  const emu = new Emulator({ dir, backend: 'loopback', maxQueues: queues })
  try {
    say(`emulated NIC ${emu.uuid} under ${dir}\n`)
    emu.setLink(false)
    const dev = await open(emu.uuid, { root: dir, queues, timeoutMs: 10_000 })
    try {
      const info = dev.info()
      say(`driver up: mac ${info.mac}, mtu ${info.mtu}, NVSP 0x${info.nvspVersion.toString(16)}, ${info.queues} queues\n`)
      const linkUp = new Promise<LinkEvent>((resolve) => dev.on('link', (e: LinkEvent) => e.up && resolve(e)))
      emu.setLink(true)
      const ev = await Promise.race([linkUp, sleep(5000).then(() => null)])
      if (ev === null) throw new Error('no link-up event within 5 s')
      say(`link up event: ${ev.speedMbps} Mbit/s\n`)
      const qs = dev.queues()
      const mac = info.mac.split(':').map((h) => parseInt(h, 16))
      const burst = 32
      const tx = qs.map((_, qi) => {
        const buf = new Uint8Array(burst * size)
        for (let i = 0; i < burst; i++) buf.set(frame(size, mac, qi * burst + i), i * size)
        return { buf, lens: new Uint32Array(burst).fill(size), meta: new Uint32Array(burst * META_WORDS) }
      })
      const rbuf = new Uint8Array(256 * 1536)
      const rlens = new Uint32Array(256)
      const rmeta = new Uint32Array(256 * META_WORDS)
      let sent = 0
      let received = 0
      const start = performance.now()
      const end = start + seconds * 1000
      // On a terminal one line redrawn in place; piped, one line per 10 % step (a log keeps the whole progress).
      let lastDraw = 0
      let lastStep = -1
      const draw = (now: number, final = false) => {
        if (values.json) return
        const frac = Math.min(1, (now - start) / (seconds * 1000))
        const width = 30
        const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.')
        const line = `[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  tx ${sent}  rx ${received}`
        lastDraw = now
        if (io.tty) {
          io.out(`\r${line}${final ? '\n' : ''}`)
          return
        }
        const stepNo = Math.floor(frac * 10)
        if (stepNo > lastStep || final) {
          lastStep = stepNo
          io.out(`${line}\n`)
        }
      }
      while (performance.now() < end) {
        const sliceEnd = Math.min(end, performance.now() + 50)
        while (performance.now() < sliceEnd) {
          qs.forEach((q, i) => {
            const t = tx[i]
            if (t) sent += q.txBurst(t.buf, t.lens, t.meta, burst)
            received += q.rxBurst(rbuf, rlens, rmeta)
          })
        }
        const now = performance.now()
        if (now - lastDraw >= 100) draw(now)
        await new Promise((r) => setImmediate(r))
      }
      const elapsed = (performance.now() - start) / 1000
      // Drain what is still on its way back, until every frame sent is either received or counted as dropped (or
      // nothing has moved for 200 ms).
      const accounted = () => received + hostDrops(emu.stats().totals.drops) + driverDrops(dev.queueStats())
      let idleSince = performance.now()
      const drainUntil = idleSince + 2000
      while (accounted() < sent && performance.now() < drainUntil && performance.now() - idleSince < 200) {
        let got = 0
        for (const q of qs) {
          got += q.rxBurst(rbuf, rlens, rmeta)
          q.pollCompletions()
        }
        received += got
        if (got > 0) idleSince = performance.now()
        else await sleep(1)
      }
      draw(performance.now(), true)
      const per = dev.queueStats()
      const host = emu.stats().totals
      const drops = { ...host.drops, driverMissed: driverDrops(per) }
      const dropped = hostDrops(host.drops) + drops.driverMissed
      const inFlight = sent - received - dropped
      const mpps = (sent + received) / elapsed / 1e6
      if (values.json) {
        io.out(`${JSON.stringify({ uuid: emu.uuid, frameSize: size, seconds: elapsed, sent, received, dropped, inFlight, drops, mpps, queues: per, host })}\n`)
      } else {
        io.out(`\n${table(['QUEUE', 'TX PKTS', 'TX BYTES', 'RX PKTS', 'RX BYTES', 'RX MISSED', 'ERRORS'], per.map((q) => [String(q.queue), String(q.txPackets), String(q.txBytes), String(q.rxPackets), String(q.rxBytes), String(q.rxMissed), String(q.txErrors + q.rxErrors)]))}\n`)
        io.out(`host saw ${host.guestToHostFrames} frames from the guest and sent ${host.hostToGuestFrames} back\n`)
        io.out(`${reconciliation(sent, received, drops, inFlight)}\n`)
        io.out(`${size}-byte frames: ${(sent / elapsed / 1e6).toFixed(3)} Mpps tx + ${(received / elapsed / 1e6).toFixed(3)} Mpps rx = ${mpps.toFixed(3)} Mpps in ${elapsed.toFixed(2)} s\n`)
      }
    } finally {
      dev.close()
    }
  } finally {
    emu.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return 0
}
