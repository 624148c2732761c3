/**
 * Handles collected while open. A `Netvsc` or `Queue` that becomes unreachable without `close()` is released by its
 * native finalizer (the queue claim, the device's channels); this registry makes that visible with one process
 * warning per kind, as Node does for a FileHandle closed on garbage collection.
 */

const warned = new Set<string>()

const registry = new FinalizationRegistry<{ kind: string; what: string }>(({ kind, what }) => {
  if (warned.has(kind)) return
  warned.add(kind)
  process.emitWarning(
    `${what} was garbage-collected while open and has been released; close it, or keep a reference for as long as ` +
      `it must stay open (further ${kind} collections are not reported)`,
    { code: 'NETVSC_COLLECTED_OPEN', type: 'Warning' },
  )
})

/** Watches `handle` (described by `what`) until `released(handle)` is called. */
export function watchOpen(handle: object, kind: 'Queue' | 'Netvsc', what: string): void {
  registry.register(handle, { kind, what }, handle)
}

/** The handle was closed: its collection is no longer worth a warning. */
export function released(handle: object): void {
  registry.unregister(handle)
}
