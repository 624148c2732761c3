/**
 * Errors of the netvsc package. Every failure reported by the native addon or by the facade's own argument checks
 * is a `NetvscError` whose `code` is one of `NetvscErrorCode`; the native error is kept as `cause`.
 */

/** Every code a `NetvscError` can carry (the addon's `Code` enum in crates/netvsc-node/src/errors.rs). */
export type NetvscErrorCode =
  | 'ERR_NETVSC_INVALID_ARG'
  | 'ERR_NETVSC_IO'
  | 'ERR_NETVSC_SYSFS_MISSING'
  | 'ERR_NETVSC_SYSFS_PARSE'
  | 'ERR_NETVSC_BAD_MAPS'
  | 'ERR_NETVSC_DEVICE_NOT_FOUND'
  | 'ERR_NETVSC_NOT_UIO_BOUND'
  | 'ERR_NETVSC_UIO'
  | 'ERR_NETVSC_NAPI'
  | 'ERR_NETVSC_CLOSED'
  | 'ERR_NETVSC_TIMEOUT'
  | 'ERR_NETVSC_ABORTED'
  | 'ERR_NETVSC_HOST_REJECTED'
  | 'ERR_NETVSC_PROTOCOL'
  | 'ERR_NETVSC_DEVARGS'
  | 'ERR_NETVSC_CONFIG'
  | 'ERR_NETVSC_NOT_SUPPORTED'
  | 'ERR_NETVSC_STARTED'
  | 'ERR_NETVSC_QUEUE_BUSY'
  | 'ERR_NETVSC_DEVICE_BUSY'
  | 'ERR_NETVSC_NOT_OPEN'
  | 'ERR_NETVSC_RING'
  | 'ERR_NETVSC_QUEUE_REMOVED'
  | 'ERR_NETVSC_VIEWS_OUTSTANDING'
  | 'ERR_NETVSC_TX_BUFFER_BUSY'
  | 'ERR_NETVSC_RECOVERY'
  | 'ERR_NETVSC_EMULATOR'
  | 'ERR_NETVSC_RUNNER'

const CODES: ReadonlySet<string> = new Set<NetvscErrorCode>([
  'ERR_NETVSC_INVALID_ARG',
  'ERR_NETVSC_IO',
  'ERR_NETVSC_SYSFS_MISSING',
  'ERR_NETVSC_SYSFS_PARSE',
  'ERR_NETVSC_BAD_MAPS',
  'ERR_NETVSC_DEVICE_NOT_FOUND',
  'ERR_NETVSC_NOT_UIO_BOUND',
  'ERR_NETVSC_UIO',
  'ERR_NETVSC_NAPI',
  'ERR_NETVSC_CLOSED',
  'ERR_NETVSC_TIMEOUT',
  'ERR_NETVSC_ABORTED',
  'ERR_NETVSC_HOST_REJECTED',
  'ERR_NETVSC_PROTOCOL',
  'ERR_NETVSC_DEVARGS',
  'ERR_NETVSC_CONFIG',
  'ERR_NETVSC_NOT_SUPPORTED',
  'ERR_NETVSC_STARTED',
  'ERR_NETVSC_QUEUE_BUSY',
  'ERR_NETVSC_DEVICE_BUSY',
  'ERR_NETVSC_NOT_OPEN',
  'ERR_NETVSC_RING',
  'ERR_NETVSC_QUEUE_REMOVED',
  'ERR_NETVSC_VIEWS_OUTSTANDING',
  'ERR_NETVSC_TX_BUFFER_BUSY',
  'ERR_NETVSC_RECOVERY',
  'ERR_NETVSC_EMULATOR',
  'ERR_NETVSC_RUNNER',
])

export function isNetvscErrorCode(code: unknown): code is NetvscErrorCode {
  return typeof code === 'string' && CODES.has(code)
}

export class NetvscError extends Error {
  override readonly name = 'NetvscError'
  readonly code: NetvscErrorCode

  constructor(code: NetvscErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/**
 * Turns whatever the addon threw into a `NetvscError`. Errors with one of our codes keep it; Node-API conversion
 * failures (a wrong argument type that slipped past the facade) become `ERR_NETVSC_INVALID_ARG`.
 */
export function fromNative(err: unknown): NetvscError {
  if (err instanceof NetvscError) return err
  const code = (err as { code?: unknown } | null)?.code
  const message = err instanceof Error ? err.message : String(err)
  return new NetvscError(isNetvscErrorCode(code) ? code : 'ERR_NETVSC_INVALID_ARG', message, { cause: err })
}
