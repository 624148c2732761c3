/**
 * `netvsc metrics --listen HOST:PORT [--root DIR]`: a Prometheus/OpenMetrics exporter. Every scrape of `/metrics`
 * reads the telemetry pages of all devices under DIR whose owner runs (nothing is opened). `--once` prints one
 * exposition to stdout instead of serving.
 */
import * as http from 'node:http'
import { listTelemetry, metricsText } from '../telemetry.js'
import { type Io, UsageError, parse, rootOption, untilSignal } from './common.js'

export const METRICS_HELP = `Usage: netvsc metrics [--listen HOST:PORT] [--root DIR] [--once]

Serves the counters, per-queue xstats, link and VF state that running netvsc processes publish (their telemetry
pages under DIR/run/netvsc) as Prometheus text on http://HOST:PORT/metrics (default 127.0.0.1:9464).

Options:
  --listen HOST:PORT  Address to serve on (port 0: any free port; the address is printed)
  --root DIR          Directory the devices live under (default /; the emulator's directory)
  --once              Print one exposition and exit
`

function listenOption(v: string | undefined): { host: string; port: number } {
  const s = v ?? '127.0.0.1:9464'
  const m = /^(.*):(\d{1,5})$/.exec(s)
  const port = m ? Number(m[2]) : NaN
  if (!m || !m[1] || port > 65535) throw new UsageError(`--listen must be HOST:PORT, got '${s}'`)
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port }
}

export async function runMetrics(args: string[], io: Io): Promise<number> {
  const { values, help } = parse(args, { listen: { type: 'string' }, root: { type: 'string' }, once: { type: 'boolean' } }, { min: 0, max: 0, names: '' })
  if (help) return (io.out(METRICS_HELP), 0)
  const root = rootOption(values.root) ?? '/'
  if (values.once) {
    io.out(metricsText(listTelemetry({ root })))
    return 0
  }
  const { host, port } = listenOption(values.listen)
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics\n')
      return
    }
    try {
      const body = metricsText(listTelemetry({ root }))
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body)
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err instanceof Error ? err.message : String(err)}\n`)
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const addr = server.address()
  const shown = typeof addr === 'object' && addr ? `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : `${host}:${port}`
  io.out(`serving http://${shown}/metrics\n`)
  await untilSignal()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return 0
}
