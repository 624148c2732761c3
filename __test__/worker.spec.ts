/**
 * worker_threads: the main thread opens a 2-queue device; each worker opens one queue with openQueue(uuid, index),
 * sends frames on it and reports; the process-wide registry refuses a second owner of a queue, and a terminated
 * worker's queue is released by its env cleanup hook.
 */
import test from 'ava'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'
import { claimedQueueCount, open } from '../src/index.js'
import { emulator, waitFor } from './helpers.js'

const workerFile = path.join(__dirname, 'fixtures/queue-worker.ts')

function spawn(data: object): Worker {
  return new Worker(`require('tsx/cjs'); require(${JSON.stringify(workerFile)})`, { eval: true, workerData: data })
}

function message(w: Worker): Promise<{ ok: boolean; sent?: number; code?: string; index?: number }> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve)
    w.once('error', reject)
  })
}

test.serial('one queue per worker; host counts per channel match what each worker sent', async (t) => {
  const { emu, dir, dispose } = emulator({ maxQueues: 2 })
  try {
    using dev = await open(emu.uuid, { root: dir, queues: 2, timeoutMs: 5000 })
    t.is(dev.queueCount, 2)
    const frames = [40, 70]
    const workers = [0, 1].map((index) => spawn({ uuid: emu.uuid, root: dir, index, frames: frames[index], hold: false }))
    // Listen for 'exit' from the start: a worker that finishes while we still wait for the other's message has
    // already exited by the time both messages are in, and a listener added then would never fire.
    const exits = workers.map((w) => new Promise((r) => w.once('exit', r)))
    const results = await Promise.all(workers.map(message))
    t.deepEqual(results.map((r) => [r.ok, r.index, r.sent]), [[true, 0, 40], [true, 1, 70]])
    await Promise.all(exits)
    const host = emu.stats()
    t.is(host.totals.guestToHostFrames, 110)
    t.deepEqual(host.channels.map((c) => c.guestToHostFrames).sort((a, b) => a - b), [40, 70])
    t.is(dev.stats().opackets, 110)
  } finally {
    dispose()
  }
})

test.serial('a second owner is refused; terminating a worker releases its queue', async (t) => {
  const { emu, dir, dispose } = emulator({ maxQueues: 1 })
  try {
    using dev = await open(emu.uuid, { root: dir, timeoutMs: 5000 })
    const before = claimedQueueCount()
    const holder = spawn({ uuid: emu.uuid, root: dir, index: 0, frames: 0, hold: true })
    t.true((await message(holder)).ok)
    t.is(claimedQueueCount(), before + 1)
    const second = spawn({ uuid: emu.uuid, root: dir, index: 0, frames: 0, hold: false })
    const r = await message(second)
    t.false(r.ok)
    t.is(r.code, 'ERR_NETVSC_QUEUE_BUSY')
    t.throws(() => dev.queue(0), { message: /already open/ })
    await holder.terminate()
    await waitFor('claim released', 5000, () => claimedQueueCount() === before)
    t.is(dev.queue(0).index, 0, 'the main thread can take the queue after the worker is gone')
  } finally {
    dispose()
  }
})
