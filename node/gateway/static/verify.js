// The page never trusts the node it talks to: this module checks a manifest's signed
// envelope against the video id (docs/protocol.md sections 3 to 7) and every chunk against
// its cid (section 5) before the player uses a byte of it. No DOM: node's test runner
// imports it too (tests/web/verify.test.mjs). WebCrypto does the hashing and Ed25519.

import { DecodeError, decodeCanonical, toHex } from './msgpack.js'

// docs/protocol.md section 10.
export const ENVELOPE_BYTES_MAX = 131264
export const ENVELOPE_VERSION = 1
export const KIND_BYTES_MAX = 32
export const CHUNK_BYTES_MAX = 4194304
export const DURATION_SLACK_MS = 1000
export const BODY_BYTES_MAX = {
  manifest: 131072,
  profile: 1024,
  tombstone: 512,
  offer: 512,
  follow: 256,
  unfollow: 256,
  reaction: 256,
  view: 256
}
const DOMAIN_PREFIX = 'toktok/v1/'
const CID_PREFIX = [0x01, 0x55, 0x12, 0x20]
const CID_LEN = 36
const ENVELOPE_KEYS = ['body', 'kind', 'sig', 'signer', 'v']
// The fields of each kind's record, in canonical order (section 3).
const KIND_FIELDS = {
  manifest: [
    'author', 'created_ms', 'description', 'duration_ms', 'license', 'remix_of', 'renditions',
    'source_sha256', 'source_size', 'tags', 'thumbnail', 'title'
  ],
  profile: ['author', 'avatar', 'bio', 'created_ms', 'name'],
  tombstone: ['author', 'created_ms', 'manifest', 'reason'],
  follow: ['author', 'created_ms', 'target'],
  unfollow: ['author', 'created_ms', 'target'],
  reaction: ['author', 'created_ms', 'manifest', 'reaction'],
  view: ['author', 'created_ms', 'manifest', 'watched_ms'],
  offer: [
    'amount_max', 'author', 'created_ms', 'expires_ms', 'network', 'peer', 'price_den',
    'price_num', 'price_token', 'shop', 'token'
  ]
}
const UINT64_MAX = 2n ** 64n - 1n

/** Why the page refused an envelope or a chunk; `message` says it for people. */
export class VerifyError extends Error {
  constructor (message) {
    super(message)
    this.name = 'VerifyError'
  }
}

const utf8 = new TextEncoder()

function subtle () {
  const s = globalThis.crypto?.subtle
  if (!s) {
    throw new VerifyError(
      'cannot verify: WebCrypto needs a secure context (open the page on 127.0.0.1 or over HTTPS)'
    )
  }
  return s
}

export async function sha256 (bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes))
}

function equalBytes (a, b) {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i]
  return diff === 0
}

// ---------------------------------------------------------------------------------------
// Ed25519, strict (section 4): libsodium's checks before the cofactorless equation, which
// WebCrypto computes. Without them a lax verifier could accept what every node refuses.

const L = 2n ** 252n + 27742317777372353535851937790883648493n
const P = 2n ** 255n - 19n
// libsodium's small-order encodings (ge25519_has_small_order), sign bit cleared.
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'
]

function littleEndian (bytes) {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i])
  return n
}

function hasSmallOrder (point) {
  const cleared = point.slice()
  cleared[31] &= 0x7f
  return SMALL_ORDER.includes(toHex(cleared))
}

/** True when `signature` is a strict Ed25519 signature of `message` by `publicKey`. */
export async function verifyEd25519 (publicKey, message, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  const R = signature.subarray(0, 32)
  const S = signature.subarray(32)
  if (littleEndian(S) >= L || hasSmallOrder(R)) return false
  if ((littleEndian(publicKey) & (2n ** 255n - 1n)) >= P || hasSmallOrder(publicKey)) return false
  let key
  try {
    key = await subtle().importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify'])
  } catch (err) {
    if (err instanceof VerifyError) throw err
    return false // not a curve point
  }
  return subtle().verify('Ed25519', key, signature, message)
}

// ---------------------------------------------------------------------------------------
// Envelopes: rules 1 to 8 of section 7, for any kind.

function decode (bytes, bytesMax, what) {
  try {
    return decodeCanonical(bytes, bytesMax)
  } catch (err) {
    if (err instanceof DecodeError) throw new VerifyError(`${what}: ${err.message}`)
    throw err
  }
}

function exactKeys (map, keys, what) {
  if (!(map instanceof Map) || [...map.keys()].join() !== keys.join()) {
    throw new VerifyError(`${what} is not a map of exactly ${keys.join(', ')}`)
  }
}

function bytesField (map, key, lenMin, lenMax) {
  const value = map.get(key)
  if (!(value instanceof Uint8Array) || value.length < lenMin || value.length > lenMax) {
    throw new VerifyError(`${key}: bytes of ${lenMin} to ${lenMax}`)
  }
  return value
}

function uintField (map, key, min = 0, max = UINT64_MAX) {
  const value = map.get(key)
  const ok = (typeof value === 'number' || typeof value === 'bigint') &&
    BigInt(value) >= BigInt(min) && BigInt(value) <= BigInt(max)
  if (!ok) throw new VerifyError(`${key}: an integer from ${min} to ${max}`)
  return value
}

function textField (map, key, lenMin, lenMax) {
  const value = map.get(key)
  const len = typeof value === 'string' ? utf8.encode(value).length : -1
  if (len < lenMin || len > lenMax) throw new VerifyError(`${key}: text of ${lenMin} to ${lenMax} bytes`)
  return value
}

function arrayField (map, key, lenMin, lenMax) {
  const value = map.get(key)
  if (!Array.isArray(value) || value.length < lenMin || value.length > lenMax) {
    throw new VerifyError(`${key}: an array of ${lenMin} to ${lenMax} items`)
  }
  return value
}

/**
 * Check an envelope's rules 1 to 8 (the record's fields only by name, but a manifest's
 * fully: see verifyManifest). Returns {kind, body, signer, record}. Throws VerifyError.
 */
export async function openEnvelope (raw) {
  const env = decode(raw, ENVELOPE_BYTES_MAX, 'envelope') // rules 1 and 2
  exactKeys(env, ENVELOPE_KEYS, 'the envelope')
  const body = bytesField(env, 'body', 0, BODY_BYTES_MAX.manifest)
  const kind = textField(env, 'kind', 1, KIND_BYTES_MAX)
  const sig = bytesField(env, 'sig', 64, 64)
  const signer = bytesField(env, 'signer', 32, 32)
  const v = uintField(env, 'v', 0, 255)
  if (v !== ENVELOPE_VERSION) throw new VerifyError(`envelope version ${v}, not ${ENVELOPE_VERSION}`)
  if (!Object.hasOwn(KIND_FIELDS, kind)) throw new VerifyError(`unknown kind ${JSON.stringify(kind)}`)
  if (body.length > BODY_BYTES_MAX[kind]) {
    throw new VerifyError(`a ${kind} body is at most ${BODY_BYTES_MAX[kind]} bytes`)
  }
  const tag = utf8.encode(DOMAIN_PREFIX + kind)
  const signingInput = new Uint8Array(tag.length + 1 + body.length)
  signingInput.set(tag)
  signingInput.set(body, tag.length + 1) // the zero byte between them is already there
  if (!(await verifyEd25519(signer, signingInput, sig))) {
    throw new VerifyError('bad signature')
  }
  const record = decode(body, BODY_BYTES_MAX[kind], `${kind} body`) // rule 7
  exactKeys(record, KIND_FIELDS[kind], `a ${kind} body`)
  if (!equalBytes(bytesField(record, 'author', 32, 32), signer)) { // rule 8
    throw new VerifyError('the signer is not the author')
  }
  return { kind, body, signer, record }
}

// ---------------------------------------------------------------------------------------
// Manifests: the record's fields (section 3) and rules 11 to 19; the time rules 9 and 10
// are the node's, since a page's clock proves nothing.

const CONTROL = [[0x00, 0x1f], [0x7f, 0x9f], [0x202a, 0x202e], [0x2066, 0x2069]]
const WHITE = [
  [0x09, 0x0d], [0x20, 0x20], [0x85, 0x85], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a],
  [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]
]
const inRanges = (ranges, c) => ranges.some(([lo, hi]) => c >= lo && c <= hi)
const codePoints = (text) => [...text].map((ch) => ch.codePointAt(0))
const hasControl = (text, allowed = []) =>
  codePoints(text).some((c) => inRanges(CONTROL, c) && !allowed.includes(c))
const CODECS_RE = /^[A-Za-z0-9.,]+$/

function chunkRef (map, what, withDuration) {
  exactKeys(map, withDuration ? ['cid', 'duration_ms', 'size'] : ['cid', 'size'], what)
  const cid = bytesField(map, 'cid', CID_LEN, CID_LEN)
  if (CID_PREFIX.some((b, i) => cid[i] !== b)) throw new VerifyError(`${what}: not a content id`)
  const ref = { cid, cid_hex: toHex(cid), size: uintField(map, 'size', 1, CHUNK_BYTES_MAX) }
  if (withDuration) ref.duration_ms = uintField(map, 'duration_ms', 1, 60000)
  return ref
}

function rendition (map, durationMs) {
  const keys = ['bandwidth', 'codecs', 'height', 'init', 'name', 'segments', 'width']
  exactKeys(map, keys, 'a rendition')
  const name = textField(map, 'name', 1, 16)
  const codecs = textField(map, 'codecs', 1, 64)
  if (hasControl(name)) throw new VerifyError('a rendition name holds a control character')
  if (!CODECS_RE.test(codecs)) throw new VerifyError(`codecs ${JSON.stringify(codecs)}: letters, digits, dots and commas only`)
  let startMs = 0
  const segments = arrayField(map, 'segments', 1, 320).map((item, i) => {
    const ref = chunkRef(item, `segment ${i} of ${name}`, true)
    ref.start_ms = startMs
    startMs += ref.duration_ms
    return ref
  })
  if (Math.abs(startMs - durationMs) > DURATION_SLACK_MS) {
    throw new VerifyError(`rendition ${name}: segments last ${startMs} ms, the video ${durationMs} ms`)
  }
  return {
    name,
    codecs,
    width: uintField(map, 'width', 1, 4096),
    height: uintField(map, 'height', 1, 4096),
    bandwidth: uintField(map, 'bandwidth', 1, 100000000),
    init: chunkRef(map.get('init'), `the init of ${name}`, false),
    segments
  }
}

/** The checked fields of a manifest record (a Map from openEnvelope). Throws VerifyError. */
export function parseManifest (record) {
  exactKeys(record, KIND_FIELDS.manifest, 'a manifest body')
  const title = textField(record, 'title', 1, 150)
  if (codePoints(title).every((c) => inRanges(WHITE, c))) throw new VerifyError('the title is blank')
  if (hasControl(title)) throw new VerifyError('the title holds a control character')
  const description = textField(record, 'description', 0, 2000)
  if (hasControl(description, [0x0a])) throw new VerifyError('the description holds a control character')
  const license = textField(record, 'license', 0, 64)
  if (hasControl(license)) throw new VerifyError('the license holds a control character')
  const tags = arrayField(record, 'tags', 0, 10).map((_, i, all) => {
    const tag = textField(new Map([['tag', all[i]]]), 'tag', 0, 32)
    const bad = tag === '' || /[A-Z]/.test(tag) || hasControl(tag) ||
      codePoints(tag).some((c) => inRanges(WHITE, c))
    if (bad) throw new VerifyError(`tag ${JSON.stringify(tag)}: empty, upper case or with spaces`)
    return tag
  })
  if (new Set(tags).size !== tags.length) throw new VerifyError('a tag is repeated')
  const durationMs = uintField(record, 'duration_ms', 1, 600000)
  const renditions = arrayField(record, 'renditions', 1, 4).map((r) => rendition(r, durationMs))
  if (new Set(renditions.map((r) => r.name)).size !== renditions.length) {
    throw new VerifyError('two renditions share a name')
  }
  const remixOf = bytesField(record, 'remix_of', 0, 32)
  if (remixOf.length !== 0 && remixOf.length !== 32) throw new VerifyError('remix_of is not a message id')
  const author = bytesField(record, 'author', 32, 32)
  return {
    author,
    author_hex: toHex(author),
    created_ms: uintField(record, 'created_ms'),
    title,
    description,
    license,
    tags,
    remix_of: toHex(remixOf),
    duration_ms: durationMs,
    source_sha256: toHex(bytesField(record, 'source_sha256', 32, 32)),
    source_size: uintField(record, 'source_size', 1),
    thumbnail: chunkRef(record.get('thumbnail'), 'the thumbnail', false),
    renditions
  }
}

/**
 * The manifest of video `idHex`, from its envelope bytes `raw`: SHA-256(raw) is the id, the
 * envelope verifies (rules 1 to 8) and is a manifest whose record is valid. Throws VerifyError.
 */
export async function verifyManifest (raw, idHex) {
  const id = toHex(await sha256(raw))
  if (id !== String(idHex).toLowerCase()) throw new VerifyError(`the envelope's id is ${id}, not ${idHex}`)
  const opened = await openEnvelope(raw)
  if (opened.kind !== 'manifest') throw new VerifyError(`a ${opened.kind}, not a manifest`)
  return { id, ...parseManifest(opened.record) }
}

/** Refuse chunk `bytes` unless it is exactly what `ref` ({cid, size}) names. */
export async function verifyChunk (bytes, ref) {
  if (bytes.length !== ref.size) {
    throw new VerifyError(`chunk of ${bytes.length} bytes, the manifest says ${ref.size}`)
  }
  if (!equalBytes(await sha256(bytes), ref.cid.subarray(4))) {
    throw new VerifyError(`chunk ${toHex(ref.cid).slice(8, 20)}… does not hash to its cid`)
  }
}
