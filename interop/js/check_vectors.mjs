// Runs receive.mjs's decoder and envelope checks over the test vectors of docs/protocol.md
// section 9, without a network:  node check_vectors.mjs ../../tests/vectors
// Prints one JSON line per failure, then a summary line; exits 0 when nothing failed.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkEnvelope, decodeCanonical, DecodeError } from './receive.mjs'

const KINDS = ['manifest', 'profile', 'tombstone', 'follow', 'unfollow', 'reaction', 'view', 'offer']
// The rules of section 7 this client applies (all but the record schema part of rule 7,
// and the content rules from 9 on); an invalid vector breaking one must not verify.
const RULES_CHECKED = [
  'The envelope is at most ENVELOPE_BYTES_MAX bytes.',
  'The envelope is the canonical encoding of an envelope record.',
  'The envelope version is one this node speaks.',
  'The kind is a known kind.',
  "The body is at most its kind's size limit.",
  'The signature verifies over the domain tag and the body bytes received.',
  'The signer is the record\'s author.'
]

const dir = process.argv[2]
const load = (name) => JSON.parse(readFileSync(join(dir, name), 'utf8'))
const bytes = (h) => Uint8Array.from(Buffer.from(h, 'hex'))
const failures = []
let checked = 0

function fail (name, problem) {
  failures.push({ name, problem })
  process.stdout.write(JSON.stringify({ name, problem }) + '\n')
}

// The decoded value in the vectors' tagged form ([type, payload], section 9).
function tagged (value) {
  if (typeof value === 'bigint') return ['int', value.toString()]
  if (typeof value === 'boolean') return ['bool', value]
  if (typeof value === 'string') return ['str', value]
  if (value instanceof Uint8Array) return ['bin', Buffer.from(value).toString('hex')]
  if (Array.isArray(value)) return ['array', value.map(tagged)]
  return ['map', [...value].map(([k, v]) => [k, tagged(v)])]
}

const codec = load('codec.json')
for (const vector of codec.valid) {
  checked += 1
  try {
    const got = JSON.stringify(tagged(decodeCanonical(bytes(vector.hex), 1 << 20)))
    if (got !== JSON.stringify(vector.value)) fail(vector.name, `decoded as ${got}`)
  } catch (err) {
    fail(vector.name, `refused: ${err.message}`)
  }
}
for (const vector of codec.invalid) {
  checked += 1
  try {
    decodeCanonical(bytes(vector.hex), vector.bytes_max)
    fail(vector.name, 'accepted')
  } catch (err) {
    if (!(err instanceof DecodeError)) fail(vector.name, `crashed: ${err.stack}`)
  }
}

for (const kind of KINDS) {
  for (const vector of load(`${kind}.json`).vectors) {
    checked += 1
    const line = checkEnvelope(bytes(vector.envelope_hex))
    const expected = { id: vector.message_id_hex, kind, signer: vector.public_key_hex }
    for (const [key, value] of Object.entries(expected)) {
      if (line[key] !== value) fail(vector.name, `${key} is ${line[key]}, not ${value}`)
    }
    if (!line.verified) fail(vector.name, `not verified: ${line.error}`)
  }
}

for (const vector of load('invalid.json').vectors) {
  if (!RULES_CHECKED.some((rule) => vector.rule.startsWith(rule.slice(0, -1)))) continue
  checked += 1
  const line = checkEnvelope(bytes(vector.envelope_hex))
  if (line.verified) fail(vector.name, `verified, though it breaks: ${vector.rule}`)
}

process.stdout.write(JSON.stringify({ checked, failed: failures.length }) + '\n')
process.exit(failures.length === 0 ? 0 : 1)
