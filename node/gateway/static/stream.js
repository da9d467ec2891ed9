// The data-channel segment protocol of SPEC.md "Streaming over WebRTC", without the
// channel: ChunkRequests is fed received messages and handed a `send` function, and keeps
// the requests in flight; ThroughputMeter and chooseRendition pick the rendition;
// segmentAt finds the segment holding a time. No DOM and no clock of its own, so node's
// test runner drives it (tests/web/stream.test.mjs).

export const REQUESTS_IN_FLIGHT_MAX = 8
export const WAITING_MAX = 64
export const FRAME_HEADER_BYTES = 12
export const FRAME_BYTES_MAX = 256 * 1024
const REQUEST_ID_MAX = 0xffffffff

/** The node refused a request, or its reply broke the protocol. */
export class ChunkError extends Error {
  constructor (message) {
    super(message)
    this.name = 'ChunkError'
  }
}

/** The bytes that came back are not the chunk asked for (wrong total size). */
export class ChunkMismatch extends ChunkError {
  constructor (message) {
    super(message)
    this.name = 'ChunkMismatch'
  }
}

/** We gave up on the request ourselves (a seek, a new video, the channel closed). */
export class ChunkCancelled extends Error {
  constructor (message = 'cancelled') {
    super(message)
    this.name = 'ChunkCancelled'
  }
}

/**
 * Requests chunks over one data channel, at most REQUESTS_IN_FLIGHT_MAX at a time; the
 * rest wait their turn (at most WAITING_MAX). `send(text)` sends a text message;
 * `onBytes(n)` hears of every payload received (for the meter).
 */
export class ChunkRequests {
  constructor ({ send, onBytes = () => {}, onFlightChange = () => {} }) {
    this.send = send
    this.onBytes = onBytes
    this.onFlightChange = onFlightChange
    this.nextId = 1
    this.inFlight = new Map() // id -> request
    this.waiting = [] // requests not yet sent, in order
    this.closedReason = null
  }

  /** Ask for the chunk `cidHex` of `size` bytes; resolves to its bytes (not yet verified). */
  request (video, cidHex, size) {
    if (this.closedReason) return Promise.reject(new ChunkCancelled(this.closedReason))
    if (this.waiting.length >= WAITING_MAX) {
      return Promise.reject(new ChunkError(`more than ${WAITING_MAX} chunk requests waiting`))
    }
    const req = { id: 0, video, cid: cidHex, size, buffer: null, received: 0 }
    const promise = new Promise((resolve, reject) => { req.resolve = resolve; req.reject = reject })
    req.promise = promise
    this.waiting.push(req)
    this.pump()
    return promise
  }

  /** The request whose promise is `promise`, cancelled: told to the node if it was sent. */
  cancel (promise, reason = 'cancelled') {
    const index = this.waiting.findIndex((r) => r.promise === promise)
    if (index >= 0) {
      const [req] = this.waiting.splice(index, 1)
      req.reject(new ChunkCancelled(reason))
      return
    }
    for (const req of this.inFlight.values()) {
      if (req.promise === promise) {
        this.inFlight.delete(req.id)
        this.send(JSON.stringify({ cancel: req.id }))
        req.reject(new ChunkCancelled(reason))
        this.onFlightChange(this.inFlight.size)
        this.pump()
        return
      }
    }
  }

  cancelAll (reason = 'cancelled') {
    for (const req of this.waiting.splice(0)) req.reject(new ChunkCancelled(reason))
    for (const req of [...this.inFlight.values()]) this.cancel(req.promise, reason)
  }

  /** The channel is gone: every request fails, and later ones at once. */
  close (reason) {
    this.closedReason = reason
    for (const req of this.waiting.splice(0)) req.reject(new ChunkCancelled(reason))
    for (const req of this.inFlight.values()) req.reject(new ChunkCancelled(reason))
    this.inFlight.clear()
    this.onFlightChange(0)
  }

  get pending () {
    return this.inFlight.size + this.waiting.length
  }

  pump () {
    while (this.inFlight.size < REQUESTS_IN_FLIGHT_MAX && this.waiting.length > 0) {
      const req = this.waiting.shift()
      req.id = this.takeId()
      req.buffer = new Uint8Array(req.size) // the manifest's size, never the node's word
      this.inFlight.set(req.id, req)
      this.onFlightChange(this.inFlight.size)
      this.send(JSON.stringify({ id: req.id, video: req.video, cid: req.cid }))
    }
  }

  takeId () {
    let id = this.nextId
    while (this.inFlight.has(id)) id = id >= REQUEST_ID_MAX ? 1 : id + 1
    this.nextId = id >= REQUEST_ID_MAX ? 1 : id + 1
    return id
  }

  /** One message from the channel: a string (a refusal) or an ArrayBuffer (a frame). */
  receive (data) {
    if (typeof data === 'string') return this.receiveText(data)
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
    if (bytes.length < FRAME_HEADER_BYTES || bytes.length > FRAME_BYTES_MAX) {
      return // not a frame of ours; there is no request to blame it on
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
    const id = view.getUint32(0)
    const offset = view.getUint32(4)
    const total = view.getUint32(8)
    const payload = bytes.subarray(FRAME_HEADER_BYTES)
    const req = this.inFlight.get(id)
    if (!req) return // cancelled, or answered already: frames still on their way
    this.onBytes(payload.length)
    if (total !== req.size) {
      return this.fail(req, new ChunkMismatch(`the node sends ${total} bytes, the manifest says ${req.size}`))
    }
    if (offset + payload.length > total) {
      return this.fail(req, new ChunkMismatch(`a frame runs past the chunk's ${total} bytes`))
    }
    req.buffer.set(payload, offset)
    req.received += payload.length
    if (offset + payload.length === total) {
      this.inFlight.delete(id)
      this.onFlightChange(this.inFlight.size)
      // Ordered delivery gives the frames in order; fewer bytes means a gap, which the
      // hash check would catch anyway, but the message here is clearer.
      if (req.received !== total) {
        req.reject(new ChunkMismatch(`${req.received} of ${total} bytes arrived`))
      } else {
        req.resolve(req.buffer)
      }
      this.pump()
    }
  }

  receiveText (text) {
    let msg
    try {
      msg = JSON.parse(text)
    } catch {
      return
    }
    const req = msg && typeof msg === 'object' ? this.inFlight.get(msg.id) : undefined
    if (req) this.fail(req, new ChunkError(`the node refused a chunk: ${msg.error}`), false)
  }

  fail (req, err, tellNode = true) {
    this.inFlight.delete(req.id)
    if (tellNode) this.send(JSON.stringify({ cancel: req.id })) // stop the rest of its frames
    req.reject(err)
    this.onFlightChange(this.inFlight.size)
    this.pump()
  }
}

/**
 * Bits per second while something was in flight, over the last `samplesMax` completed
 * chunks: idle time (a full buffer) does not count, and parallel requests share it.
 */
export class ThroughputMeter {
  constructor ({ now, samplesMax = 4 }) {
    this.now = now
    this.samplesMax = samplesMax
    this.samples = [] // [bytes, busy ms]
    this.bytes = 0
    this.busyMs = 0
    this.busySince = null
    this.count = 0 // samples taken so far: a new decision needs a new one
  }

  /** The number of requests in flight changed to `n`. */
  flight (n) {
    const t = this.now()
    if (n > 0 && this.busySince === null) this.busySince = t
    if (n === 0 && this.busySince !== null) {
      this.busyMs += t - this.busySince
      this.busySince = null
    }
  }

  received (n) {
    this.bytes += n
  }

  /** A chunk finished: what arrived since the last one becomes a sample. */
  sample () {
    const t = this.now()
    let busy = this.busyMs
    if (this.busySince !== null) {
      busy += t - this.busySince
      this.busySince = t
    }
    this.samples.push([this.bytes, Math.max(busy, 1)])
    if (this.samples.length > this.samplesMax) this.samples.shift()
    this.bytes = 0
    this.busyMs = 0
    this.count += 1
  }

  /** Bits per second, or null before the first sample. */
  get bps () {
    if (this.samples.length === 0) return null
    const bytes = this.samples.reduce((a, [b]) => a + b, 0)
    const ms = this.samples.reduce((a, [, m]) => a + m, 0)
    return (bytes * 8 * 1000) / ms
  }
}

export const SWITCH_UP_HEADROOM = 1.5

/**
 * The rendition index to use next, given renditions sorted by bandwidth (lowest first),
 * the current index and the measured bits per second (null: not measured yet). Up one
 * step when the throughput is over SWITCH_UP_HEADROOM times the next one's bandwidth;
 * down to the best that fits when it is below the current one's.
 */
export function chooseRendition (renditions, current, bps) {
  if (bps === null) return current
  const next = renditions[current + 1]
  if (next && bps > SWITCH_UP_HEADROOM * next.bandwidth) return current + 1
  if (bps < renditions[current].bandwidth) {
    let best = 0
    for (let i = 0; i < current; i++) if (renditions[i].bandwidth <= bps) best = i
    return best
  }
  return current
}

/** The index of the segment holding `timeMs` ({start_ms, duration_ms} each); past the end, the last. */
export function segmentAt (segments, timeMs) {
  let lo = 0
  let hi = segments.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (segments[mid].start_ms <= timeMs) lo = mid
    else hi = mid - 1
  }
  return lo
}
