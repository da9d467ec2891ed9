// The player (SPEC.md "Streaming over WebRTC"): chunks come over one WebRTC data channel
// per page, each is checked against the verified manifest, then appended to a Media Source
// Extensions SourceBuffer. The node is never trusted: a chunk that fails its check is not
// appended. State for tests and the bench: window.toktok.player.

import { getBytes, postJson } from './api.js'
import { ChunkMismatch, ChunkRequests, ThroughputMeter, chooseRendition, segmentAt } from './stream.js'
import { ENVELOPE_BYTES_MAX, VerifyError, verifyChunk, verifyManifest } from './verify.js'

const AHEAD_MS = 10000 // how far past currentTime the player fetches
const QUEUE_MAX = 4 // chunks fetched ahead at once: few, so a new measurement acts soon
// Until a segment plays (at the start, after a seek) only the init and that segment are
// fetched: parallel requests share the link and would all arrive late.
const QUEUE_STARTING = 2
const BEHIND_S_MAX = 30 // buffered seconds kept behind currentTime
const BEHIND_S_KEPT = 10 // what an eviction leaves behind currentTime
const ICE_GATHERING_MS = 5000
const CHANNEL_OPEN_MS = 15000
const TICK_MS = 1000
export const SEGMENT_FAILED = 'segment failed verification'

// ---------------------------------------------------------------------------------------
// The page's one peer connection, opened on first use and reused across videos.

let shared = null // a promise of {pc, dc, requests, meter}

function waitFor (target, event, ms, ready) {
  return new Promise((resolve, reject) => {
    if (ready()) return resolve()
    const timer = setTimeout(() => { target.removeEventListener(event, check); reject(new Error(`no ${event} in ${ms} ms`)) }, ms)
    function check () {
      if (!ready()) return
      clearTimeout(timer)
      target.removeEventListener(event, check)
      resolve()
    }
    target.addEventListener(event, check)
  })
}

async function openConnection () {
  const pc = new RTCPeerConnection({ iceServers: [] })
  const dc = pc.createDataChannel('toktok', { ordered: true })
  dc.binaryType = 'arraybuffer'
  const now = () => performance.now()
  const meter = new ThroughputMeter({ now })
  const requests = new ChunkRequests({
    send: (text) => { if (dc.readyState === 'open') dc.send(text) },
    onBytes: (n) => meter.received(n),
    onFlightChange: (n) => meter.flight(n)
  })
  const conn = { pc, dc, requests, meter, dead: false }
  const lost = (why) => {
    conn.dead = true
    requests.close(why)
  }
  dc.addEventListener('message', (e) => requests.receive(e.data))
  dc.addEventListener('close', () => lost('the connection to the node closed'))
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') lost(`the connection to the node ${pc.connectionState}`)
  })
  try {
    await pc.setLocalDescription(await pc.createOffer())
    // No trickle: the offer carries every candidate. A slow interface only costs the wait.
    await waitFor(pc, 'icegatheringstatechange', ICE_GATHERING_MS, () => pc.iceGatheringState === 'complete').catch(() => {})
    const answer = await postJson('/api/rtc', { type: 'offer', sdp: pc.localDescription.sdp })
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp })
    await waitFor(dc, 'open', CHANNEL_OPEN_MS, () => dc.readyState === 'open')
  } catch (err) {
    pc.close()
    throw new Error(`cannot open the WebRTC connection to the node: ${err.message}`)
  }
  return conn
}

async function connection () {
  if (shared) {
    const conn = await shared.catch(() => null)
    if (conn && !conn.dead) return conn
  }
  const opening = openConnection()
  shared = opening
  opening.catch(() => { if (shared === opening) shared = null })
  return opening
}

/** Close the page's peer connection (leaving the watch page, pagehide). */
export function closeConnection () {
  const closing = shared
  shared = null
  closing?.then((conn) => {
    conn.dead = true
    conn.requests.close('the connection was closed')
    conn.pc.close()
  }, () => {})
}

if (typeof window !== 'undefined') window.addEventListener('pagehide', closeConnection)

// ---------------------------------------------------------------------------------------
// The click that led to a video, for marks.click (a feed item records it).

let lastClick = null

export function noteClick (videoId) {
  lastClick = { id: videoId, at: performance.now() }
}

function takeClick (videoId) {
  const click = lastClick
  lastClick = null
  return click && click.id === videoId ? click.at : null
}

// ---------------------------------------------------------------------------------------

const mime = (rendition) => `video/mp4; codecs="${rendition.codecs}"`

function playerError (err) {
  if (err instanceof VerifyError || err instanceof ChunkMismatch) return `${SEGMENT_FAILED}: ${err.message}`
  return err.message
}

/**
 * Plays video `id` in `video` (an HTMLVideoElement); `showError(text)` puts errors on the
 * page. start() resolves once playback is set up, or rejects; destroy() stops everything.
 */
export class Player {
  constructor ({ video, id, showError }) {
    this.video = video
    this.id = id
    this.showError = showError
    this.state = {
      video: id,
      rendition: null,
      appended: 0,
      errors: [],
      marks: { click: takeClick(id), firstFrame: null, seekStart: null, seeked: null }
    }
    globalThis.toktok = globalThis.toktok || {}
    globalThis.toktok.player = this.state
    this.queue = [] // {kind: 'init'|'segment', rendition, ref, promise}, in append order
    this.inits = new Map() // rendition name -> its verified init bytes
    this.generation = 0 // bumped by every seek that refetches; stale work checks it
    this.scheduledRendition = null
    this.scheduledEndMs = 0
    this.sourceType = null
    this.appending = false
    this.starting = true
    this.stopped = false
    this.listeners = []
  }

  async start () {
    // The connection opens while the envelope is fetched and checked.
    const connecting = connection()
    connecting.catch(() => {}) // awaited below, once the manifest is known good
    try {
      const raw = await getBytes(`/api/videos/${encodeURIComponent(this.id)}/envelope`, ENVELOPE_BYTES_MAX)
      try {
        this.manifest = await verifyManifest(raw, this.id)
      } catch (err) {
        if (err instanceof VerifyError) throw new Error(`video failed verification: ${err.message}`)
        throw err
      }
      if (this.stopped) return
      const Source = globalThis.MediaSource
      if (!Source) throw new Error('this browser has no Media Source Extensions')
      this.renditions = this.manifest.renditions
        .filter((r) => Source.isTypeSupported(mime(r)))
        .sort((a, b) => a.bandwidth - b.bandwidth)
      if (this.renditions.length === 0) {
        throw new Error(`this browser cannot play ${this.manifest.renditions.map((r) => r.codecs).join(' or ')}`)
      }
      this.current = 0 // the lowest first: the meter has nothing to say yet
      this.decidedAt = 0
      this.conn = await connecting
      if (this.stopped) return
      await this.openSource(Source)
      if (this.stopped) return
      this.watchVideo()
      this.tick = setInterval(() => this.schedule(), TICK_MS)
      this.schedule()
    } catch (err) {
      if (!this.stopped) this.fail(err)
    }
  }

  async openSource (Source) {
    this.source = new Source()
    this.url = URL.createObjectURL(this.source)
    this.video.src = this.url
    await waitFor(this.source, 'sourceopen', CHANNEL_OPEN_MS, () => this.source.readyState === 'open')
    this.source.duration = this.manifest.duration_ms / 1000
    this.sourceType = mime(this.renditions[0])
    this.buffer = this.source.addSourceBuffer(this.sourceType)
  }

  on (target, event, fn) {
    target.addEventListener(event, fn)
    this.listeners.push([target, event, fn])
  }

  watchVideo () {
    const v = this.video
    const marks = this.state.marks
    const firstFrame = () => { if (marks.firstFrame === null) marks.firstFrame = performance.now() }
    if (typeof v.requestVideoFrameCallback === 'function') v.requestVideoFrameCallback(firstFrame)
    this.on(v, 'timeupdate', () => {
      if (v.currentTime > 0) firstFrame()
      this.schedule()
    })
    this.on(v, 'seeking', () => this.onSeeking())
    this.on(v, 'seeked', () => {
      const resumed = () => { if (marks.seeked === null && marks.seekStart !== null) marks.seeked = performance.now() }
      if (v.paused) resumed()
      else if (typeof v.requestVideoFrameCallback === 'function') v.requestVideoFrameCallback(resumed)
      else v.addEventListener('timeupdate', resumed, { once: true })
    })
  }

  // --- fetching -------------------------------------------------------------------------

  fetchChunk (ref) {
    const request = this.conn.requests.request(this.id, ref.cid_hex, ref.size)
    const promise = request.then(async (bytes) => {
      this.conn.meter.sample()
      await verifyChunk(bytes, ref) // refused here, so never appended
      return bytes
    })
    promise.request = request // what cancel() names; the checked one is what we await
    return promise
  }

  /** Queue the chunks from scheduledEndMs on, while fewer than AHEAD_MS are fetched ahead. */
  schedule () {
    if (this.stopped || !this.buffer) return
    const nowMs = this.video.currentTime * 1000
    const queueMax = this.starting ? QUEUE_STARTING : QUEUE_MAX
    while (this.queue.length < queueMax && nowMs + AHEAD_MS > this.scheduledEndMs) {
      this.decide()
      const rendition = this.renditions[this.current]
      const segments = rendition.segments
      const last = segments[segments.length - 1]
      if (this.scheduledEndMs >= last.start_ms + last.duration_ms) break
      if (this.scheduledRendition !== rendition) {
        const cached = this.inits.get(rendition.name)
        const promise = cached ? Promise.resolve(cached) : this.fetchChunk(rendition.init)
        this.queue.push({ kind: 'init', rendition, ref: rendition.init, promise })
        this.scheduledRendition = rendition
      }
      const ref = segments[segmentAt(segments, this.scheduledEndMs)]
      this.queue.push({ kind: 'segment', rendition, ref, promise: this.fetchChunk(ref) })
      this.scheduledEndMs = ref.start_ms + ref.duration_ms
    }
    for (const item of this.queue) item.promise.catch(() => {}) // awaited in order by appendLoop
    this.appendLoop()
  }

  /** Switch rendition on a new throughput sample only, one decision per sample. */
  decide () {
    const meter = this.conn.meter
    if (meter.count === this.decidedAt) return
    this.decidedAt = meter.count
    this.current = chooseRendition(this.renditions, this.current, meter.bps)
  }

  // --- appending ------------------------------------------------------------------------

  async appendLoop () {
    if (this.appending) return
    this.appending = true
    try {
      while (!this.stopped && this.queue.length > 0) {
        const item = this.queue[0]
        const generation = this.generation
        let bytes
        try {
          bytes = await item.promise
        } catch (err) {
          if (this.stopped || generation !== this.generation) continue // a seek dropped it
          throw err
        }
        if (this.stopped || generation !== this.generation) continue
        if (item.kind === 'init') this.inits.set(item.rendition.name, bytes)
        await this.append(item, bytes)
        if (this.stopped || generation !== this.generation) continue
        this.queue.shift()
        this.appended(item)
        this.schedule()
      }
      this.finishIfDone()
    } catch (err) {
      if (!this.stopped) this.fail(err)
    } finally {
      this.appending = false
    }
  }

  appended (item) {
    if (item.kind === 'init') {
      this.state.rendition = item.rendition.name
      return
    }
    this.state.appended += 1
    this.starting = false
    // Muted, autoplay is allowed; otherwise the controls' play button is there.
    if (this.state.appended === 1) this.video.play().catch(() => {})
  }

  async append (item, bytes) {
    if (item.kind === 'init') {
      const type = mime(item.rendition)
      if (type !== this.sourceType && typeof this.buffer.changeType === 'function') {
        this.buffer.changeType(type)
        this.sourceType = type
      }
    } else {
      await this.evict()
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await this.bufferOp(() => this.buffer.appendBuffer(bytes))
        return
      } catch (err) {
        // The buffer is full: drop what was played, or wait for playback to make room.
        if (err.name !== 'QuotaExceededError' || attempt >= 30 || this.stopped) throw err
        await this.evict(2)
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
    }
  }

  /** Remove what lies more than BEHIND_S_MAX behind currentTime (or `keepS` when pressed). */
  async evict (keepS = null) {
    const ranges = this.buffer.buffered
    if (ranges.length === 0) return
    const t = this.video.currentTime
    const start = ranges.start(0)
    if (keepS === null && t - start <= BEHIND_S_MAX) return
    const end = t - (keepS ?? BEHIND_S_KEPT)
    if (end > start) await this.bufferOp(() => this.buffer.remove(start, end))
  }

  /** Run an append or remove and wait for its updateend (an abort resolves it too). */
  async bufferOp (start) {
    if (this.buffer.updating) await waitFor(this.buffer, 'updateend', 60000, () => !this.buffer.updating)
    await new Promise((resolve, reject) => {
      const done = () => { cleanup(); resolve() }
      const failed = () => { cleanup(); reject(new Error('the browser could not decode a segment')) }
      const cleanup = () => {
        this.buffer.removeEventListener('updateend', done)
        this.buffer.removeEventListener('error', failed)
      }
      this.buffer.addEventListener('updateend', done)
      this.buffer.addEventListener('error', failed)
      try {
        start()
      } catch (err) {
        cleanup()
        reject(err)
      }
    })
  }

  finishIfDone () {
    if (this.stopped) return
    const segments = this.renditions[this.current].segments
    const last = segments[segments.length - 1]
    const done = this.queue.length === 0 && this.scheduledEndMs >= last.start_ms + last.duration_ms
    if (done && this.source.readyState === 'open' && !this.buffer.updating) this.source.endOfStream()
  }

  // --- seeking --------------------------------------------------------------------------

  buffered (t) {
    const ranges = this.buffer.buffered
    for (let i = 0; i < ranges.length; i++) if (t >= ranges.start(i) && t < ranges.end(i) - 0.1) return true
    return false
  }

  onSeeking () {
    this.state.marks.seekStart = performance.now()
    this.state.marks.seeked = null
    if (this.stopped || !this.buffer) return
    const t = this.video.currentTime
    if (this.buffered(t)) return // the browser resumes from what it holds
    this.generation += 1
    for (const item of this.queue.splice(0)) this.conn.requests.cancel(item.promise.request, 'seek')
    try {
      if (this.source.readyState === 'open') this.buffer.abort()
    } catch {
      // A removal is running (abort refuses then); appends end on segment boundaries anyway.
    }
    this.scheduledRendition = null // an init first: the aborted append left the parser reset
    this.starting = true
    const segments = this.renditions[this.current].segments
    this.scheduledEndMs = segments[segmentAt(segments, t * 1000)].start_ms
    this.schedule()
  }

  // --- the end --------------------------------------------------------------------------

  fail (err) {
    const text = playerError(err)
    this.state.errors.push(text)
    this.showError(text)
    this.stopQueue()
  }

  stopQueue () {
    this.stopped = true
    clearInterval(this.tick)
    for (const item of this.queue.splice(0)) this.conn?.requests.cancel(item.promise.request, 'stopped')
  }

  destroy () {
    this.stopQueue()
    for (const [target, event, fn] of this.listeners) target.removeEventListener(event, fn)
    this.listeners = []
    if (this.url) {
      this.video.removeAttribute('src')
      this.video.load()
      URL.revokeObjectURL(this.url)
    }
  }
}
