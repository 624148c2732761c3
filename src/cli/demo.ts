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
    const dev = open(emu.uuid, { root: dir, queues, timeoutMs: 10_000 })
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
      let lastDraw = 0
      const draw = (now: number, final = false) => {
        if (values.json) return
        const frac = Math.min(1, (now - start) / (seconds * 1000))
        const width = 30
        const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.')
        const line = `[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  tx ${sent}  rx ${received}`
        if (io.tty) io.out(`\r${line}${final ? '\n' : ''}`)
        else if (final || now - lastDraw >= 500) io.out(`${line}\n`)
        lastDraw = now
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
      // Drain what is still on its way back.
      const drainUntil = performance.now() + 500
      while (received < sent && performance.now() < drainUntil) {
        for (const q of qs) {
          received += q.rxBurst(rbuf, rlens, rmeta)
          q.pollCompletions()
        }
      }
      const elapsed = (performance.now() - start) / 1000
      draw(performance.now(), true)
      const per = dev.queueStats()
      const host = emu.stats().totals
      const mpps = (sent + received) / elapsed / 1e6
      if (values.json) {
        io.out(`${JSON.stringify({ uuid: emu.uuid, frameSize: size, seconds: elapsed, sent, received, mpps, queues: per, host })}\n`)
      } else {
        io.out(`\n${table(['QUEUE', 'TX PKTS', 'TX BYTES', 'RX PKTS', 'RX BYTES', 'RX MISSED', 'ERRORS'], per.map((q) => [String(q.queue), String(q.txPackets), String(q.txBytes), String(q.rxPackets), String(q.rxBytes), String(q.rxMissed), String(q.txErrors + q.rxErrors)]))}\n`)
        io.out(`host saw ${host.guestToHostFrames} frames from the guest and sent ${host.hostToGuestFrames} back\n`)
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
