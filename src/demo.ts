/** `npm run demo`: the `netvsc demo` command (emulated NIC + driver in this process; see src/cli/demo.ts). */
import { runDemo } from './cli/demo.js'

void runDemo(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  tty: process.stdout.isTTY === true,
}).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`netvsc demo: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  },
)
