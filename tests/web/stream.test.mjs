// The data-channel segment protocol (node/gateway/static/stream.js), driven without a
// channel: frames in, text messages out, a clock the test moves.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import {
  ChunkCancelled, ChunkError, ChunkMismatch, ChunkRequests, REQUESTS_IN_FLIGHT_MAX,
  ThroughputMeter, chooseRendition, segmentAt
} from '../../node/gateway/static/stream.js'

const VIDEO = 'ab'.repeat(32)
const cid = (n) => '01551220' + n.toString(16).padStart(2, '0').repeat(32)

function harness () {
  const sent = []
  const requests = new ChunkRequests({ send: (text) => sent.push(JSON.parse(text)) })
  return { sent, requests }
}

// A binary message: the 12-byte header (id, offset, total; big-endian) then the payload.
function frame (id, offset, total, payload) {
  const out = new Uint8Array(12 + payload.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, id)
  view.setUint32(4, offset)
  view.setUint32(8, total)
  out.set(payload, 12)
  return out.buffer
}

const filled = (n, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff)

test('a chunk in several frames comes back whole', async () => {
  const { sent, requests } = harness()
  const data = filled(600 * 1024)
  const promise = requests.request(VIDEO, cid(1), data.length)
  assert.deepEqual(sent, [{ id: 1, video: VIDEO, cid: cid(1) }])
  const step = 256 * 1024 - 12
  for (let at = 0; at < data.length; at += step) {
    requests.receive(frame(1, at, data.length, data.subarray(at, at + step)))
  }
  assert.deepEqual(await promise, data)
  assert.equal(requests.pending, 0)
})

test('at most 8 requests in flight; the rest are sent as earlier ones finish', async () => {
  const { sent, requests } = harness()
  const promises = Array.from({ length: 11 }, (_, i) => requests.request(VIDEO, cid(i), 4))
  assert.equal(sent.length, REQUESTS_IN_FLIGHT_MAX)
  assert.deepEqual(sent.map((m) => m.id), [1, 2, 3, 4, 5, 6, 7, 8])
  requests.receive(frame(3, 0, 4, filled(4)))
  assert.equal(sent.length, 9)
  assert.equal(sent[8].cid, cid(8))
  for (const id of [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]) requests.receive(frame(id, 0, 4, filled(4, id)))
  const got = await Promise.all(promises)
  assert.deepEqual(got[0], filled(4, 1))
  assert.deepEqual(got[10], filled(4, 11))
  assert.equal(sent.length, 11)
})

test('cancel: the node is told, the promise rejects, late frames are dropped', async () => {
  const { sent, requests } = harness()
  const first = requests.request(VIDEO, cid(1), 8)
  const second = requests.request(VIDEO, cid(2), 8)
  requests.receive(frame(1, 0, 8, filled(4)))
  requests.cancel(first, 'seek')
  assert.deepEqual(sent.at(-1), { cancel: 1 })
  await assert.rejects(first, ChunkCancelled)
  requests.receive(frame(1, 4, 8, filled(4))) // still on its way: ignored
  requests.receive(frame(2, 0, 8, filled(8)))
  assert.deepEqual(await second, filled(8))
})

test('cancel of a request still waiting sends nothing', async () => {
  const { sent, requests } = harness()
  const promises = Array.from({ length: 9 }, (_, i) => requests.request(VIDEO, cid(i), 4))
  requests.cancel(promises[8])
  await assert.rejects(promises[8], ChunkCancelled)
  assert.equal(sent.length, 8)
  assert.ok(sent.every((m) => m.cancel === undefined))
  requests.cancelAll()
  await Promise.all(promises.slice(0, 8).map((p) => assert.rejects(p, ChunkCancelled)))
  assert.deepEqual(sent.slice(8).map((m) => m.cancel), [1, 2, 3, 4, 5, 6, 7, 8])
})

test('test_invalid_refusal: a refusal rejects that request with its message', async () => {
  const { requests } = harness()
  const promise = requests.request(VIDEO, cid(1), 4)
  requests.receive(JSON.stringify({ id: 1, error: 'not held here' }))
  await assert.rejects(promise, (err) => err instanceof ChunkError && /not held here/.test(err.message))
  requests.receive('not json') // ignored
  requests.receive(JSON.stringify({ id: 99, error: 'x' }))
})

test('test_invalid_total: a total other than the manifest size is refused at once', async () => {
  const { sent, requests } = harness()
  const promise = requests.request(VIDEO, cid(1), 100)
  requests.receive(frame(1, 0, 101, filled(50)))
  await assert.rejects(promise, ChunkMismatch)
  assert.deepEqual(sent.at(-1), { cancel: 1 })
})

test('test_invalid_frame: a frame past the end, or a gap, is refused', async () => {
  const { requests } = harness()
  const past = requests.request(VIDEO, cid(1), 10)
  requests.receive(frame(1, 8, 10, filled(4)))
  await assert.rejects(past, /runs past/)
  const gap = requests.request(VIDEO, cid(2), 10)
  requests.receive(frame(2, 6, 10, filled(4)))
  await assert.rejects(gap, /4 of 10 bytes arrived/)
  requests.receive(new Uint8Array(5).buffer) // shorter than a header: ignored
})

test('close: every request fails, and later ones at once', async () => {
  const { requests } = harness()
  const promises = Array.from({ length: 10 }, (_, i) => requests.request(VIDEO, cid(i), 4))
  requests.close('the connection to the node closed')
  for (const p of promises) await assert.rejects(p, /closed/)
  await assert.rejects(requests.request(VIDEO, cid(1), 4), ChunkCancelled)
})

test('request ids wrap around below 2^32 and skip ids in flight', () => {
  const { sent, requests } = harness()
  requests.nextId = 0xffffffff
  requests.request(VIDEO, cid(1), 4)
  requests.request(VIDEO, cid(2), 4)
  assert.deepEqual(sent.map((m) => m.id), [0xffffffff, 1])
})

test('the meter counts busy time only', () => {
  let t = 0
  const meter = new ThroughputMeter({ now: () => t })
  assert.equal(meter.bps, null)
  meter.flight(1)
  t += 100
  meter.received(125000)
  meter.sample() // 125 kB in 100 ms: 10 Mbit/s
  meter.flight(0)
  assert.equal(meter.bps, 10e6)
  t += 5000 // idle: a full buffer
  meter.flight(1)
  t += 100
  meter.received(125000)
  meter.sample()
  assert.equal(meter.bps, 10e6)
  assert.equal(meter.count, 2)
})

test('chooseRendition: up with headroom, down when below, else stay', () => {
  const r = [{ bandwidth: 600e3 }, { bandwidth: 1.5e6 }, { bandwidth: 2.5e6 }]
  const cases = [
    // [current, bps, want]
    [0, null, 0],
    [0, 2e6, 0], // 2 Mbit/s is below 1.5 x 1.5 Mbit/s
    [0, 2.3e6, 1],
    [1, 3.8e6, 2],
    [1, 3.7e6, 1],
    [2, 100e6, 2],
    [2, 2e6, 1],
    [2, 1e6, 0],
    [2, 100e3, 0],
    [0, 100e3, 0]
  ]
  for (const [current, bps, want] of cases) {
    assert.equal(chooseRendition(r, current, bps), want, `from ${current} at ${bps}`)
  }
})

test('segmentAt finds the segment holding a time', () => {
  const segments = [0, 2000, 4000, 5500].map((start, i, all) => ({ start_ms: start, duration_ms: (all[i + 1] ?? 6000) - start }))
  const cases = [[0, 0], [1999, 0], [2000, 1], [4500, 2], [5500, 3], [5999, 3], [60000, 3], [-5, 0]]
  for (const [ms, want] of cases) assert.equal(segmentAt(segments, ms), want, `${ms} ms`)
})
