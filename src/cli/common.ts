/** Shared pieces of the `netvsc` commands: argument parsing that reports usage errors, output, signals. */
import * as fs from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { parseDevargs } from '../devargs.js'

/** Bad usage: exit status 2 with one line on stderr. */
export class UsageError extends Error {}

/** The operation failed (exit status 1); the message is already a full sentence, printed after `netvsc: `. */
export class CommandError extends Error {}

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
    throw new UsageError(parseArgsMessage(err, args))
  }
  const help = (parsed.values as { help?: boolean }).help === true
  if (!help) {
    const n = parsed.positionals.length
    if (n < positionals.min) throw new UsageError(`missing ${positionals.names}`)
    if (n > positionals.max) throw new UsageError(`unexpected argument '${parsed.positionals[positionals.max]}'`)
  }
  return { values: parsed.values as { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string }, positionals: parsed.positionals, help }
}

/**
 * Our own one-line wording for each error `util.parseArgs` throws (its codes are stable, its English is not ours):
 * an unknown option, a string option without a value (at the end, or followed by another option, which Node calls
 * "ambiguous"), a value given to a boolean option, an unexpected positional.
 */
export function parseArgsMessage(err: unknown, args: readonly string[]): string {
  const code = (err as { code?: unknown } | null)?.code
  const text = err instanceof Error ? err.message : String(err)
  const name = /'(-[^' ]*)/.exec(text)?.[1] ?? '?'
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${name}' (see --help)`
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${/'([^']*)'/.exec(text)?.[1] ?? '?'}'`
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      if (/does not take an argument/.test(text)) return `option '${name}' takes no value`
      const at = args.findIndex((a) => a === name || (name.startsWith('--') ? false : a.startsWith(name)))
      const next = at >= 0 ? args[at + 1] : undefined
      if (next !== undefined && next.startsWith('-')) {
        return `option '${name}' needs a value, got the option '${next}' (write ${name}=${next} if that is the value)`
      }
      return `option '${name}' needs a value`
    }
    default:
      return 'cannot parse the arguments (see --help)'
  }
}

/** Checks a `--root DIR` value: non-empty, and the directory exists (a typo must not read as "no devices"). */
export function rootOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (value === '') throw new UsageError("option '--root' needs a non-empty directory")
  let isDir = false
  try {
    isDir = fs.statSync(value).isDirectory()
  } catch {
    throw new UsageError(`option '--root': ${value} does not exist`)
  }
  if (!isDir) throw new UsageError(`option '--root': ${value} is not a directory`)
  return value
}

/** Checks a `--devargs` value up front, so a bad one is bad usage (status 2), not a failed open. */
export function devargsOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  try {
    parseDevargs(value)
  } catch (err) {
    throw new UsageError(`option '--devargs': ${(err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err)).replace(/^devargs: /, '')}`)
  }
  return value
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

/** The table formatter lives in ../format.ts (one for the whole CLI); re-exported for the command modules. */
export { table } from '../format.js'
