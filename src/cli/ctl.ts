/**
 * `netvsc ctl DIR <command...>`: one request to the control socket `DIR/ctl.sock` of a running `netvsc emulate`
 * (served by the emulator's native thread, so it answers during `--run` too). The request is one JSON line
 * `{"cmd":..,"args":[..]}`, the reply one JSON line, printed as it came. Exit status: 0 when the emulator accepted the
 * command (`"ok":true`), 1 when it refused it or cannot be reached, 2 on bad usage.
 */
import * as net from 'node:net'
import * as path from 'node:path'
import { type Io, UsageError } from './common.js'
import { CommandError } from './bind.js'

export const CTL_HELP = `Usage: netvsc ctl DIR COMMAND [ARG ...]

Send one command to the emulator running on tree DIR (its control socket DIR/ctl.sock) and print the reply JSON.
The same commands exist in the API (Emulator.control(cmd, ...args) and the typed methods). 'netvsc ctl DIR help'
lists what that emulator serves.

Commands:
  link up | down      Link indication to the guest (media connect / disconnect)
  link flap [MS]      Link down, then up again after MS ms (default 100) unless another link command comes first
  speed MBPS          The link speed the host reports (RNDIS link-speed queries and a LINK_SPEED_CHANGE
                      indication), 1..400000 Mbit/s
  gen start | stop    Generator backend: start a new run (count/duration from its first frame) / stop it
  gen rate PPS        Frames per second from now on (0 or 'unlimited': as many as the host asks for)
  gen size B[,B...] | gen imix
                      Frame sizes without FCS, 60..9018, used in turn; imix = 7:4:1 of 60/566/1514 bytes
  gen status | reset  The generator's settings, counters and checker results / zero the checker
  vf offer | revoke | remove | add | switch-back | state
                      VF association allocated=1 / =0, hot-remove (delete the veth) / hot-add, host-initiated
                      switch to synthetic, show the VF state
  vf mac XX:XX:XX:XX:XX:XX
                      Give the VF another MAC
  fault KIND[,KIND] [SEED]
                      Inject faults (torn-index, oversized-index, misaligned-index, len8-below-offset8,
                      range-outside-recv-buf, duplicate-tid, unknown-tid, withhold-completions, rndis-length-lie,
                      ppi-loop, ppi-overrun, status-storm, flood, revoke-vf, withhold-subchannels, vf-assoc-early,
                      refuse-switch, clear);
                      'fault list' names them
  stats               The emulator's stats document, with rates (pps and bit/s per direction and per queue,
                      drops/s, frames/s offered by the backend) over the last second
  stats rates         Only the rates
  help                The commands this emulator serves

Exit status: 0 accepted, 1 refused (or no emulator on DIR), 2 bad usage.
`

const TIMEOUT_MS = 10_000

/** Sends `request` (one line) to the socket at `sock` and resolves with the first reply line. */
export function request(sock: string, req: { cmd: string; args: string[] }): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock)
    let buf = ''
    const timer = setTimeout(() => {
      c.destroy()
      reject(new CommandError(`no reply from ${sock} within ${TIMEOUT_MS} ms`))
    }, TIMEOUT_MS)
    c.setEncoding('utf8')
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`))
    c.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        clearTimeout(timer)
        c.end()
        resolve(buf.slice(0, nl))
      }
    })
    c.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no emulator is serving it' : err.message
      reject(new CommandError(`control socket ${sock}: ${why}`))
    })
    c.on('end', () => {
      if (!buf.includes('\n')) {
        clearTimeout(timer)
        reject(new CommandError(`control socket ${sock} closed without a reply`))
      }
    })
  })
}

export async function runCtl(argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) return (io.out(CTL_HELP), 0)
  const [dir, cmd, ...args] = argv
  if (dir === undefined || dir === '') throw new UsageError("ctl needs 'DIR COMMAND [ARG ...]'")
  if (cmd === undefined || cmd === '') throw new UsageError(`ctl ${dir}: missing COMMAND (link, speed, gen, vf, fault, stats, help)`)
  if (cmd.startsWith('-')) throw new UsageError(`ctl: unknown option '${cmd}'`)
  const reply = await request(path.join(dir, 'ctl.sock'), { cmd, args })
  io.out(`${reply}\n`)
  let ok = false
  try {
    ok = (JSON.parse(reply) as { ok?: unknown }).ok === true
  } catch {
    throw new CommandError(`control socket answered something that is not JSON: ${reply.slice(0, 80)}`)
  }
  return ok ? 0 : 1
}
