// Canonical msgpack decoding (docs/protocol.md section 2), for the page and for node alike:
// no DOM, no Buffer. Integers come back as numbers when they are safe integers and as
// BigInt otherwise, bin as Uint8Array, str as string, arrays as Array and maps as Map
// (a Map, not an object, so that a key such as "__proto__" is only ever data). Anything
// that is not the one canonical encoding of a value throws DecodeError.

export const DEPTH_MAX = 8

export class DecodeError extends Error {
  constructor (message) {
    super(message)
    this.name = 'DecodeError'
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

// The smallest value (or length) each multi-byte form may hold: below it a shorter form
// exists, so the encoding is not canonical.
const UINT_MIN = { 0xcc: 0x80n, 0xcd: 0x100n, 0xce: 0x10000n, 0xcf: 0x100000000n }
const INT_MAX = { 0xd0: -33n, 0xd1: -129n, 0xd2: -32769n, 0xd3: -2147483649n }
const LEN_FORMS = {
  0xc4: ['bin', 1, 0],
  0xc5: ['bin', 2, 0x100],
  0xc6: ['bin', 4, 0x10000],
  0xd9: ['str', 1, 32],
  0xda: ['str', 2, 0x100],
  0xdb: ['str', 4, 0x10000],
  0xdc: ['array', 2, 16],
  0xdd: ['array', 4, 0x10000],
  0xde: ['map', 2, 16],
  0xdf: ['map', 4, 0x10000]
}

/**
 * Decode `bytes` (a Uint8Array), refusing input longer than `bytesMax` before parsing it.
 * Throws DecodeError for anything but one canonical value.
 */
export function decodeCanonical (bytes, bytesMax) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decodeCanonical takes a Uint8Array')
  if (bytes.length > bytesMax) throw new DecodeError(`${bytes.length} bytes, over ${bytesMax}`)
  const r = { bytes, pos: 0 }
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
  let n = 0n
  for (const b of take(r, size)) n = (n << 8n) | BigInt(b)
  return n
}

function integer (n) {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(n)
    : n
}

function readValue (r, depth) {
  if (depth > DEPTH_MAX) throw new DecodeError(`nested deeper than ${DEPTH_MAX}`)
  const b = take(r, 1)[0]
  if (b <= 0x7f) return b
  if (b >= 0xe0) return b - 0x100
  if (b <= 0x8f) return readMap(r, b - 0x80, depth)
  if (b <= 0x9f) return readArray(r, b - 0x90, depth)
  if (b <= 0xbf) return readStr(r, b - 0xa0)
  if (b === 0xc2) return false
  if (b === 0xc3) return true
  if (b in UINT_MIN) {
    const n = readUint(r, 1 << (b - 0xcc))
    if (n < UINT_MIN[b]) throw new DecodeError('integer not in its shortest form')
    return integer(n)
  }
  if (b in INT_MAX) {
    const size = 1 << (b - 0xd0)
    const n = BigInt.asIntN(size * 8, readUint(r, size))
    // A non-negative value takes an unsigned form; a negative one its smallest signed form.
    if (n > INT_MAX[b]) throw new DecodeError('integer not in its shortest form')
    return integer(n)
  }
  if (b in LEN_FORMS) {
    const [family, size, lenMin] = LEN_FORMS[b]
    const len = Number(readUint(r, size))
    if (len < lenMin) throw new DecodeError(`${family} length not in its shortest form`)
    if (family === 'bin') return take(r, len).slice()
    if (family === 'str') return readStr(r, len)
    if (family === 'array') return readArray(r, len, depth)
    return readMap(r, len, depth)
  }
  // c0 nil, c1, c7-c9 ext, ca-cb floats, d4-d8 fixext: none exists in canonical msgpack.
  throw new DecodeError(`forbidden type byte 0x${b.toString(16)}`)
}

function readStr (r, len) {
  const raw = take(r, len)
  try {
    return utf8.decode(raw)
  } catch {
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

// A map key: text only. Returns the string and its UTF-8 bytes, which give the order.
function readKey (r) {
  const b = take(r, 1)[0]
  let len
  if (b >= 0xa0 && b <= 0xbf) {
    len = b - 0xa0
  } else if (LEN_FORMS[b]?.[0] === 'str') {
    const [, size, lenMin] = LEN_FORMS[b]
    len = Number(readUint(r, size))
    if (len < lenMin) throw new DecodeError('str length not in its shortest form')
  } else {
    throw new DecodeError('a map key is not text')
  }
  const start = r.pos
  const key = readStr(r, len)
  return [key, r.bytes.subarray(start, r.pos)]
}

function compareBytes (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

function readMap (r, len, depth) {
  if (2 * len > r.bytes.length - r.pos) throw new DecodeError('truncated input')
  const map = new Map()
  let previous = null
  for (let i = 0; i < len; i++) {
    const [key, raw] = readKey(r)
    // Strictly increasing UTF-8 bytes: sorted, and no key twice.
    if (previous !== null && compareBytes(previous, raw) >= 0) {
      throw new DecodeError('map keys not in strictly increasing order')
    }
    previous = raw
    map.set(key, readValue(r, depth + 1))
  }
  return map
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

export function toHex (bytes) {
  let out = ''
  for (const b of bytes) out += HEX[b]
  return out
}

/** Bytes from lower- or upper-case hex; throws DecodeError for anything else. */
export function fromHex (text) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || /[^0-9a-fA-F]/.test(text)) {
    throw new DecodeError('not hex')
  }
  const out = new Uint8Array(text.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16)
  return out
}
