/**
 * netvsc: a user-space poll-mode driver for the Hyper-V synthetic NIC. This facade validates arguments, calls the
 * native addon (binding.js, built from crates/netvsc-node) and turns its errors into `NetvscError`s.
 */
import * as native from '../binding.js'
import { NetvscError, fromNative } from './errors.js'
import type { ListOptions, VmbusDevice } from './types.js'

export { NetvscError, isNetvscErrorCode } from './errors.js'
export type { NetvscErrorCode } from './errors.js'
export type { ListOptions, MapSizes, VmbusChannel, VmbusDevice } from './types.js'

/** Version of the loaded native addon. */
export function nativeVersion(): string {
  return native.nativeVersion()
}

/**
 * Every vmbus device under `options.root` (default `/`), sorted by uuid. A root without
 * `sys/bus/vmbus/devices` gives `[]`; a malformed tree throws a `NetvscError` naming the bad file.
 */
export function listDevices(options: ListOptions = {}): VmbusDevice[] {
  if (options === null || typeof options !== 'object') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', `options must be an object, got ${typeof options}`)
  }
  const { root } = options
  if (root !== undefined && typeof root !== 'string') {
    throw new NetvscError('ERR_NETVSC_INVALID_ARG', `options.root must be a string, got ${typeof root}`)
  }
  try {
    return native.listDevices(root === undefined ? {} : { root })
  } catch (err) {
    throw fromNative(err)
  }
}

export { MTU_MAX, MTU_MIN, Netvsc, Queue, open, openSync, openQueue, claimedQueueCount } from './netvsc.js'
export type {
  OpenOptions,
  OpenAsyncOptions,
  NetvscEvents,
  RecoveredEvent,
  LinkState,
  LinkEvent,
  VfEvent,
  VfStateEvent,
  VfFailureEvent,
  VfInfo,
  VfStateName,
  VfMode,
  VfReason,
  VfFailure,
  DeviceInfo,
  PortStats,
  RxBatch,
  RssOptions,
  RssState,
  RssHashType,
  TxRegionOptions,
} from './netvsc.js'
export type { Capture, CaptureOptions } from './capture.js'
export { QUEUE_STAT_NAMES, listTelemetry, metricsText, rates, readTelemetry, requestCapture, telemetryPath } from './telemetry.js'
export type { QueueTelemetry, Rates, Telemetry } from './telemetry.js'
export { PcapWriter, readPcap, readPcapRecords } from './pcap.js'
export type { PcapRecord } from './pcap.js'
export { parseDevargs, formatDevargs, strtoul, clip, DEVARG_KEYS, DEVARGS_DEFAULTS, DEVARGS_QUOTE_MAX, DevargsError } from './devargs.js'
export type { Devargs, DevargsObject, DevargKey, DevargErrorKind } from './devargs.js'
export { Emulator, FAULT_KINDS, canRunGuests, runGuest, slowHostSpec } from './emulator.js'
export type {
  ControlReply,
  EmulatorBackend,
  EmulatorOptions,
  EmulatorRates,
  EmulatorStats,
  FaultKind,
  FaultReport,
  GeneratorChecker,
  GeneratorStats,
  Rate,
  SlowHostOptions,
  SlowRequest,
} from './emulator.js'
export * from './meta.js'
