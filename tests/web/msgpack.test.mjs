// The page's canonical msgpack decoder against tests/vectors/codec.json and real envelopes.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { DecodeError, decodeCanonical, fromHex, toHex } from '../../node/gateway/static/msgpack.js'
import { bytes, load, tagged } from './vectors.mjs'

const codec = load('codec.json')
const manifest = load('manifest.json').vectors[0]

test('every valid value of codec.json decodes to its value', () => {
  assert.ok(codec.valid.length > 40)
  for (const vector of codec.valid) {
    assert.deepEqual(tagged(decodeCanonical(bytes(vector.hex), 1 << 20)), vector.value, vector.name)
  }
})

test('test_invalid_codec: every invalid encoding of codec.json is refused', () => {
  assert.ok(codec.invalid.length > 40)
  for (const vector of codec.invalid) {
    assert.throws(() => decodeCanonical(bytes(vector.hex), vector.bytes_max), DecodeError, vector.name)
  }
})

test('integers: numbers while safe, BigInt beyond', () => {
  assert.equal(decodeCanonical(bytes('cd1068'), 10), 4200)
  assert.equal(decodeCanonical(bytes('cf0000018bcfdc4040'), 10), 1699999400000)
  assert.equal(decodeCanonical(bytes('cfffffffffffffffff'), 10), 2n ** 64n - 1n)
  assert.equal(decodeCanonical(bytes('d38000000000000000'), 10), -(2n ** 63n))
})

test('a manifest envelope decodes to its five fields, bin as Uint8Array', () => {
  const env = decodeCanonical(bytes(manifest.envelope_hex), 131264)
  assert.deepEqual([...env.keys()], ['body', 'kind', 'sig', 'signer', 'v'])
  assert.equal(env.get('kind'), 'manifest')
  assert.equal(env.get('v'), 1)
  assert.ok(env.get('body') instanceof Uint8Array)
  assert.equal(toHex(env.get('body')), manifest.body_hex)
  assert.equal(toHex(env.get('signer')), manifest.public_key_hex)
  const body = decodeCanonical(env.get('body'), 131072)
  assert.equal(body.get('title'), manifest.record.title)
  assert.equal(body.get('renditions')[0].get('codecs'), 'avc1.64001f,mp4a.40.2')
})

test('test_invalid_truncated: every prefix of an envelope is refused', () => {
  const raw = bytes(manifest.envelope_hex)
  for (let n = 0; n < raw.length; n++) {
    assert.throws(() => decodeCanonical(raw.subarray(0, n), 131264), DecodeError, `${n} bytes`)
  }
})

test('test_invalid_size: input over the limit is refused before parsing', () => {
  assert.throws(() => decodeCanonical(bytes(manifest.envelope_hex), 100), /over 100/)
})

test('a map key "__proto__" stays data', () => {
  const value = decodeCanonical(bytes('81a95f5f70726f746f5f5f01'), 100)
  assert.ok(value instanceof Map)
  assert.equal(value.get('__proto__'), 1)
  assert.equal(Object.prototype.polluted, undefined)
})

test('hex round trip, and test_invalid_hex', () => {
  assert.equal(toHex(fromHex('00ff10AB')), '00ff10ab')
  for (const bad of ['0', 'zz', '0g', 12]) assert.throws(() => fromHex(bad), DecodeError)
})
