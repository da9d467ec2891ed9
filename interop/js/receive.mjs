// A js-libp2p client that joins a toktok node and checks the envelopes it gossips, written
// from docs/protocol.md alone (sections 2, 4, 6, 7 and "Gossip"), with no toktok code.
//
//   node receive.mjs --connect /ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID \
//     --topic /toktok/v1/manifests --count N --timeout-ms T
//
// It dials that one address (nothing else: no listening, no discovery), subscribes to the
// topic and, for every envelope of every batch that arrives, prints one JSON line:
//   {"id", "batch", "kind", "signer", "verified", "error"?, and for a manifest "title",
//    "author", "created_ms"}
// "id" is the message id (SHA-256 of the envelope bytes), "batch" the GossipSub message id
// of the batch that carried it. "verified" is true when the envelope passes rules 1 to 8 of
// section 7: strict canonical decoding, v = 1, a known kind, the body size, the Ed25519
// signature (strict, as section 4 says), a canonical body and signer = author. The
// kind-specific field limits of rule 7 and the content rules 9 onwards are a node's job.
//
// Once, when the dialled peer joins our GossipSub mesh for the topic (our GRAFT or its own,
// from then on it forwards every message of the topic to us), it prints
//   {"event": "mesh", "peer": PEER_ID, "topic": TOPIC}
// A line with "event" is never an envelope; envelopes published before it may come first.
//
// Exit status: 0 when N envelopes arrived and all verified, 2 when N arrived and one did
// not (or a batch was malformed), 1 when fewer than N arrived in time, 64 on bad arguments.

import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

// Node 20 lacks Promise.withResolvers (ES2024), which js-libp2p 3 calls at run time.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// The libp2p modules load after the polyfill is in place.
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { gossipsub } = await import('@libp2p/gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')

// docs/protocol.md, "Gossip" and section 10.
const GOSSIPSUB_PROTOCOL = '/meshsub/1.1.0'
const BATCH_ITEMS_MAX = 64
const BATCH_BYTES_MAX = 1024 * 1024 - 1024
const ENVELOPE_BYTES_MAX = 131264
const ENVELOPE_VERSION = 1n
const KIND_BYTES_MAX = 32
const BODY_BYTES_MAX = {
  manifest: 131072, profile: 1024, tombstone: 512, follow: 256, unfollow: 256, reaction: 256,
  view: 256, offer: 512
}
const DEPTH_MAX = 8
const DOMAIN_PREFIX = 'toktok/v1/'
const EX_USAGE = 64
const P2P_CODE = 421 // the multicodec of a multiaddr's /p2p/PEER_ID part

export class DecodeError extends Error {}

// ---------------------------------------------------------------------------------------
// Canonical msgpack (section 2): integers come back as BigInt, bin as Uint8Array, str as
// string, arrays as Array and maps as Map. Anything not canonical throws DecodeError.

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export function decodeCanonical (bytes, bytesMax) {
  if (bytes.length > bytesMax) throw new DecodeError(`${bytes.length} bytes, over ${bytesMax}`)
  const r = { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.length), pos: 0 }
  const value = readValue(r, 0)
  if (r.pos !== bytes.length) throw new DecodeError('trailing bytes after the value')
  return value
}

function take (r, n) {
  if (n > r.bytes.length - r.pos) throw new DecodeError('truncated input')
  const out = r.bytes.subarray(r.pos, r.pos + n)
  r.pos += n
  return out
}

function readUint (r, size) {
  const at = take(r, size)
  let n = 0n
  for (const b of at) n = (n << 8n) | BigInt(b)
  return n
}

function readInt (r, size) {
  return BigInt.asIntN(size * 8, readUint(r, size))
}

// The smallest value (or length) each multi-byte form may hold: below it, a shorter form
// exists, so the encoding is not canonical.
const UINT_MIN = { 0xcc: 0x80n, 0xcd: 0x100n, 0xce: 0x10000n, 0xcf: 0x100000000n }
const INT_MAX = { 0xd0: -33n, 0xd1: -129n, 0xd2: -32769n, 0xd3: -2147483649n }
const LEN_FORMS = {
  0xc4: ['bin', 1, 0], 0xc5: ['bin', 2, 0x100], 0xc6: ['bin', 4, 0x10000],
  0xd9: ['str', 1, 32], 0xda: ['str', 2, 0x100], 0xdb: ['str', 4, 0x10000],
  0xdc: ['array', 2, 16], 0xdd: ['array', 4, 0x10000],
  0xde: ['map', 2, 16], 0xdf: ['map', 4, 0x10000]
}

function readValue (r, depth) {
  if (depth > DEPTH_MAX) throw new DecodeError(`nested deeper than ${DEPTH_MAX}`)
  const b = take(r, 1)[0]
  if (b <= 0x7f) return BigInt(b)
  if (b >= 0xe0) return BigInt(b - 0x100)
  if (b <= 0x8f) return readMap(r, b - 0x80, depth)
  if (b <= 0x9f) return readArray(r, b - 0x90, depth)
  if (b <= 0xbf) return readStr(r, b - 0xa0)
  if (b === 0xc2) return false
  if (b === 0xc3) return true
  if (b in UINT_MIN) {
    const n = readUint(r, 1 << (b - 0xcc))
    if (n < UINT_MIN[b]) throw new DecodeError('integer not in its shortest form')
    return n
  }
  if (b in INT_MAX) {
    const n = readInt(r, 1 << (b - 0xd0))
    if (n > INT_MAX[b]) throw new DecodeError('integer not in its shortest form')
    return n
  }
  if (b in LEN_FORMS) {
    const [family, size, lenMin] = LEN_FORMS[b]
    const len = Number(readUint(r, size))
    if (len < lenMin) throw new DecodeError(`${family} length not in its shortest form`)
    if (family === 'bin') return take(r, len)
    if (family === 'str') return readStr(r, len)
    if (family === 'array') return readArray(r, len, depth)
    return readMap(r, len, depth)
  }
  // c0 nil, c1, c7-c9 ext, ca-cb floats, d4-d8 fixext: none exists in canonical msgpack.
  throw new DecodeError(`forbidden type byte ${b.toString(16)}`)
}

function readStr (r, len) {
  try {
    return utf8.decode(take(r, len))
  } catch (err) {
    if (err instanceof DecodeError) throw err
    throw new DecodeError('str is not well-formed UTF-8')
  }
}

function readArray (r, len, depth) {
  // Every item takes at least one byte: a bigger count is a lie, refused before allocating.
  if (len > r.bytes.length - r.pos) throw new DecodeError('truncated input')
  const items = []
  for (let i = 0; i < len; i++) items.push(readValue(r, depth + 1))
  return items
}

function readMap (r, len, depth) {
  if (2 * len > r.bytes.length - r.pos) throw new DecodeError('truncated input')
  const map = new Map()
  let previous = null
  for (let i = 0; i < len; i++) {
    const start = r.pos
    const key = readValue(r, depth + 1)
    if (typeof key !== 'string') throw new DecodeError('a map key is not text')
    const keyBytes = r.bytes.subarray(start, r.pos)
    // Keys encode as str headers then UTF-8; comparing the UTF-8 parts orders them.
    const raw = keyBytes.subarray(keyBytes.length - Buffer.byteLength(key))
    if (previous !== null && Buffer.compare(previous, raw) >= 0) {
      throw new DecodeError('map keys not in strictly increasing order')
    }
    previous = raw
    map.set(key, readValue(r, depth + 1))
  }
  return map
}

// ---------------------------------------------------------------------------------------
// Ed25519, strict (section 4): libsodium's checks, then the cofactorless equation, which
// OpenSSL's verify (node:crypto) computes and compares as bytes.

const L = 2n ** 252n + 27742317777372353535851937790883648493n
const P = 2n ** 255n - 19n
// libsodium's list of small-order point encodings (ge25519_has_small_order), compared
// with the sign bit cleared: orders 4, 1, 8, 8, 2, and the non-canonical p and p + 1.
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'
].map((h) => Buffer.from(h, 'hex'))

function littleEndian (bytes) {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i])
  return n
}

function hasSmallOrder (point) {
  const cleared = Buffer.from(point)
  cleared[31] &= 0x7f
  return SMALL_ORDER.some((blocked) => blocked.equals(cleared))
}

export function verifyStrict (publicKey, message, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  const R = signature.subarray(0, 32)
  const S = signature.subarray(32)
  if (littleEndian(S) >= L || hasSmallOrder(R)) return false
  const y = littleEndian(publicKey) & (2n ** 255n - 1n)
  if (y >= P || hasSmallOrder(publicKey)) return false
  try {
    const x = Buffer.from(publicKey).toString('base64url')
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' })
    return cryptoVerify(null, message, key, signature)
  } catch {
    return false // a key that is not a curve point
  }
}

// ---------------------------------------------------------------------------------------
// Batches and envelopes ("Gossip", section 6 and section 7 rules 1 to 8).

const hex = (bytes) => Buffer.from(bytes).toString('hex')
const sha256 = (bytes) => createHash('sha256').update(bytes).digest()

export function decodeBatch (data) {
  const value = decodeCanonical(data, BATCH_BYTES_MAX)
  if (!Array.isArray(value) || value.length < 1 || value.length > BATCH_ITEMS_MAX) {
    throw new DecodeError(`a batch is an array of 1 to ${BATCH_ITEMS_MAX} envelopes`)
  }
  if (!value.every((item) => item instanceof Uint8Array)) {
    throw new DecodeError('every item of a batch is a byte string')
  }
  return value
}

function bin (map, key, lenMin, lenMax) {
  const value = map.get(key)
  if (!(value instanceof Uint8Array) || value.length < lenMin || value.length > lenMax) {
    throw new DecodeError(`${key}: bytes of ${lenMin} to ${lenMax}`)
  }
  return value
}

function uint (map, key) {
  const value = map.get(key)
  if (typeof value !== 'bigint' || value < 0n) throw new DecodeError(`${key}: a uint`)
  return value
}

function text (map, key, lenMin, lenMax) {
  const value = map.get(key)
  const len = typeof value === 'string' ? Buffer.byteLength(value) : -1
  if (len < lenMin || len > lenMax) throw new DecodeError(`${key}: text of ${lenMin} to ${lenMax} bytes`)
  return value
}

const ENVELOPE_KEYS = 'body,kind,sig,signer,v'

// Returns the line to print for one envelope; `line.verified` is the verdict.
export function checkEnvelope (raw) {
  const line = { id: hex(sha256(raw)), kind: null, signer: null, verified: false }
  try {
    const env = decodeCanonical(raw, ENVELOPE_BYTES_MAX) // rules 1 and 2
    if (!(env instanceof Map) || [...env.keys()].join() !== ENVELOPE_KEYS) {
      throw new DecodeError(`an envelope is a map of exactly ${ENVELOPE_KEYS}`)
    }
    const kind = text(env, 'kind', 1, KIND_BYTES_MAX)
    const body = bin(env, 'body', 0, Math.max(...Object.values(BODY_BYTES_MAX)))
    const sig = bin(env, 'sig', 64, 64)
    const signer = bin(env, 'signer', 32, 32)
    const v = uint(env, 'v')
    Object.assign(line, { kind, signer: hex(signer) })
    if (v !== ENVELOPE_VERSION) throw new DecodeError(`v is ${v}, not ${ENVELOPE_VERSION}`)
    if (!Object.hasOwn(BODY_BYTES_MAX, kind)) throw new DecodeError(`unknown kind ${kind}`)
    if (body.length > BODY_BYTES_MAX[kind]) throw new DecodeError('body over its kind\'s limit')
    const signingInput = Buffer.concat([Buffer.from(DOMAIN_PREFIX + kind + '\0', 'ascii'), body])
    if (!verifyStrict(signer, signingInput, sig)) throw new DecodeError('bad signature')
    Object.assign(line, describeBody(kind, body)) // shown even when the signer check fails
    if (line.author !== line.signer) throw new DecodeError('signer is not the author')
    line.verified = true
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err
    line.error = err.message
  }
  return line
}

// The body's canonical map, and the fields worth printing. A body that fails to decode
// fails the envelope (rule 7), though this client checks only the fields it prints.
function describeBody (kind, body) {
  const record = decodeCanonical(body, BODY_BYTES_MAX[kind])
  if (!(record instanceof Map)) throw new DecodeError('a body is a map')
  const created = uint(record, 'created_ms')
  const fields = {
    author: hex(bin(record, 'author', 32, 32)),
    created_ms: created <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(created) : String(created)
  }
  if (kind === 'manifest') fields.title = text(record, 'title', 1, 150)
  return fields
}

// ---------------------------------------------------------------------------------------
// The network: one dial to the given loopback address.

function usage (message) {
  process.stderr.write(`receive.mjs: ${message}\n`)
  process.exit(EX_USAGE)
}

function parseOptions () {
  let values
  try {
    ({ values } = parseArgs({
      options: {
        connect: { type: 'string' },
        topic: { type: 'string' },
        count: { type: 'string' },
        'timeout-ms': { type: 'string' }
      }
    }))
  } catch (err) {
    usage(err.message)
  }
  const count = Number(values.count)
  const timeoutMs = Number(values['timeout-ms'])
  if (!values.connect || !values.topic) usage('--connect and --topic are required')
  if (!Number.isInteger(count) || count < 1) usage('--count: a positive integer')
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) usage('--timeout-ms: a positive integer')
  let target
  try {
    target = multiaddr(values.connect)
  } catch (err) {
    usage(`--connect: ${err.message}`)
  }
  const parts = target.getComponents().map((c) => c.name)
  if (parts.join() !== 'ip4,tcp,p2p' || target.getComponents()[0].value !== '127.0.0.1') {
    usage('--connect: /ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID (this client dials loopback only)')
  }
  return { target, topic: values.topic, count, timeoutMs }
}

async function main () {
  const { target, topic, count, timeoutMs } = parseOptions()
  const targetTcp = target.decapsulateCode(P2P_CODE).toString()
  const node = await createLibp2p({
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Dial nothing but the address we were given, whatever a peer advertises.
    connectionGater: {
      denyDialMultiaddr: (ma) => ma.decapsulateCode(P2P_CODE).toString() !== targetTcp
    },
    services: {
      identify: identify(),
      pubsub: (components) => {
        const router = gossipsub({
          globalSignaturePolicy: 'StrictSign',
          msgIdFn: (msg) => sha256(msg.data)
        })(components)
        // gossipsub 17 ignores its `protocols` option and offers 1.2, 1.1 and 1.0; the
        // field is read when the router starts, so setting it here pins our one version.
        router.protocols = [GOSSIPSUB_PROTOCOL]
        return router
      }
    }
  })

  let seen = 0
  let bad = false
  const finished = Promise.withResolvers()
  const timer = setTimeout(() => {
    process.stderr.write(`receive.mjs: ${seen} of ${count} envelopes after ${timeoutMs} ms\n`)
    finished.resolve(1)
  }, timeoutMs)

  node.services.pubsub.addEventListener('message', (event) => {
    const { topic: msgTopic, data } = event.detail
    if (msgTopic !== topic || seen >= count) return
    const batch = hex(sha256(data))
    let envelopes
    try {
      envelopes = decodeBatch(data)
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err
      process.stdout.write(JSON.stringify({ batch, verified: false, error: err.message }) + '\n')
      bad = true
      return
    }
    for (const raw of envelopes) {
      const line = { ...checkEnvelope(raw), batch }
      process.stdout.write(JSON.stringify(line) + '\n')
      bad ||= !line.verified
      seen += 1
      if (seen === count) {
        finished.resolve(bad ? 2 : 0)
        break
      }
    }
  })
  const targetPeer = target.getComponents().find((c) => c.code === P2P_CODE).value
  let meshed = false
  node.services.pubsub.addEventListener('gossipsub:graft', (event) => {
    const { peerId, topic: graftTopic } = event.detail
    if (meshed || graftTopic !== topic || String(peerId) !== targetPeer) return
    // An inbound GRAFT fires the event even when it is refused (pruned): check the mesh.
    if (!node.services.pubsub.getMeshPeers(topic).includes(targetPeer)) return
    meshed = true
    process.stdout.write(JSON.stringify({ event: 'mesh', peer: targetPeer, topic }) + '\n')
  })
  node.services.pubsub.subscribe(topic)
  try {
    await node.dial(target, { signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    process.stderr.write(`receive.mjs: cannot dial ${target}: ${err.message}\n`)
    finished.resolve(1)
  }
  const status = await finished.promise
  clearTimeout(timer)
  await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 2000))])
  process.exit(status)
}

// Run when started as a program; check_vectors.mjs imports the checks without a network.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
