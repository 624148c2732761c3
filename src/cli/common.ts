/** Shared pieces of the `netvsc` commands: argument parsing that reports usage errors, output, signals. */
import { parseArgs, type ParseArgsConfig } from 'node:util'

/** Bad usage: exit status 2 with one line on stderr. */
export class UsageError extends Error {}

export interface Io {
  out: (text: string) => void
  err: (text: string) => void
  /** Whether stdout is a terminal (progress bars redraw in place). */
  tty?: boolean
}

type Options = NonNullable<ParseArgsConfig['options']>

/** `parseArgs` with `--help` added, strict, and errors turned into `UsageError`s. */
export function parse<O extends Options>(args: string[], options: O, positionals: { min: number; max: number; names: string }) {
  let parsed
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true })
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
  const help = (parsed.values as { help?: boolean }).help === true
  if (!help) {
    const n = parsed.positionals.length
    if (n < positionals.min) throw new UsageError(`missing ${positionals.names}`)
    if (n > positionals.max) throw new UsageError(`unexpected argument '${parsed.positionals[positionals.max]}'`)
  }
  return { values: parsed.values as { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string }, positionals: parsed.positionals, help }
}

/** Parses an integer option value within bounds. */
export function intOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`option '--${name}' needs an integer, got '${value}'`)
  const n = Number(value)
  if (n < min || n > max) throw new UsageError(`option '--${name}' must be ${min}..${max}, got ${n}`)
  return n
}

export function nonEmpty(name: string, value: string | undefined): string | undefined {
  if (value === '') throw new UsageError(`option '--${name}' needs a non-empty value`)
  return value
}

/** Resolves on SIGINT/SIGTERM (or when `ms` passes, if given). */
export function untilSignal(ms?: number): Promise<string> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined
    // Signal listeners do not keep the event loop alive; this timer does until a signal arrives.
    const keepAlive = setInterval(() => {}, 1 << 30)
    const done = (why: string) => {
      clearInterval(keepAlive)
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
      if (timer) clearTimeout(timer)
      resolve(why)
    }
    const onInt = () => done('SIGINT')
    const onTerm = () => done('SIGTERM')
    process.on('SIGINT', onInt)
    process.on('SIGTERM', onTerm)
    if (ms !== undefined) timer = setTimeout(() => done('timeout'), ms)
  })
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Fixed-width text table. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}
