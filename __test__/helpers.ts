/** Shared test helpers: an in-process emulator in a scratch directory, frame builders, polling. */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Emulator, type EmulatorOptions } from '../src/index.js'

export const repo = path.resolve(__dirname, '..')
const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()

const scratch: string[] = []
// Every scratch directory goes when this test process exits, whether or not its test disposed of it (tmpfs fills up
// across runs otherwise).
process.on('exit', () => {
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true })
})

export function scratchDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(base, `netvsc-${tag}-`))
  scratch.push(dir)
  return dir
}

export function emulator(opts: Partial<EmulatorOptions> = {}): { emu: Emulator; dir: string; dispose: () => void } {
  const dir = scratchDir('spec')
  const emu = new Emulator({ dir, maxQueues: 1, ...opts })
  return {
    emu,
    dir,
    dispose: () => {
      emu.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** An Ethernet/IPv4/UDP frame of `size` bytes to `dst`, payload filled with `seed + i`. */
export function udpFrame(size: number, dst: number[], seed = 0): Uint8Array {
  const f = new Uint8Array(size)
  f.set(dst, 0)
  f.set([0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00, 0x45], 6)
  f[16] = (size - 14) >> 8
  f[17] = (size - 14) & 0xff
  f[22] = 64
  f[23] = 17
  f.set([10, 0, 0, 2, 10, 0, 0, 1, 0x04, 0xd2, 0x00, 0x50], 26)
  f[38] = (size - 34) >> 8
  f[39] = (size - 34) & 0xff
  for (let i = 42; i < size; i++) f[i] = (seed + i) & 0xff
  return f
}

export const MAC = [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01]

export async function waitFor(what: string, ms: number, cond: () => boolean): Promise<void> {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

export function runCli(args: string[], opts: { timeout?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), ...args], {
    cwd: repo,
    encoding: 'utf8',
    timeout: opts.timeout ?? 90_000,
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}
