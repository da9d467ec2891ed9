// The page's envelope and chunk checks (node/gateway/static/verify.js) against the protocol
// vectors: what every node accepts opens, and what a node must reject is refused here too.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'

import {
  VerifyError, openEnvelope, verifyChunk, verifyEd25519, verifyManifest
} from '../../node/gateway/static/verify.js'
import { KINDS, bytes, fakeChunk, hex, load } from './vectors.mjs'

const manifests = load('manifest.json').vectors
const [oneRendition, remix] = manifests
const sha256 = (data) => new Uint8Array(createHash('sha256').update(data).digest())
const refused = (promise, pattern) => assert.rejects(promise, (err) => err instanceof VerifyError && pattern.test(err.message))

// An envelope with `from` (hex, found once) replaced by `to`, and its id.
function edited (vector, from, to) {
  assert.equal(vector.envelope_hex.split(from).length, 2, 'the bytes to change occur once')
  const raw = bytes(vector.envelope_hex.replace(from, to))
  return { raw, id: hex(sha256(raw)) }
}

test('every valid envelope of every kind opens, with its kind and signer', async () => {
  for (const kind of KINDS) {
    for (const vector of load(`${kind}.json`).vectors) {
      const opened = await openEnvelope(bytes(vector.envelope_hex))
      assert.equal(opened.kind, kind, vector.name)
      assert.equal(hex(opened.signer), vector.public_key_hex, vector.name)
      assert.equal(hex(opened.body), vector.body_hex, vector.name)
    }
  }
})

test('a manifest verifies against its id, with every field of its record', async () => {
  for (const vector of manifests) {
    const m = await verifyManifest(bytes(vector.envelope_hex), vector.message_id_hex)
    const r = vector.record
    assert.equal(m.id, vector.message_id_hex)
    assert.equal(m.author_hex, r.author)
    assert.equal(m.title, r.title)
    assert.equal(m.description, r.description)
    assert.deepEqual(m.tags, r.tags)
    assert.equal(m.duration_ms, r.duration_ms)
    assert.equal(m.remix_of, r.remix_of)
    assert.equal(m.thumbnail.cid_hex, r.thumbnail.cid)
    assert.equal(m.renditions.length, r.renditions.length)
    m.renditions.forEach((got, i) => {
      const want = r.renditions[i]
      assert.equal(got.name, want.name)
      assert.equal(got.codecs, want.codecs)
      assert.equal(got.bandwidth, want.bandwidth)
      assert.equal(got.init.cid_hex, want.init.cid)
      assert.deepEqual(got.segments.map((s) => [s.cid_hex, s.size, s.duration_ms]),
        want.segments.map((s) => [s.cid, s.size, s.duration_ms]))
      let start = 0
      for (const s of got.segments) {
        assert.equal(s.start_ms, start)
        start += s.duration_ms
      }
    })
  }
})

test('the id may come in upper case', async () => {
  await verifyManifest(bytes(oneRendition.envelope_hex), oneRendition.message_id_hex.toUpperCase())
})

test('test_invalid_id: a flipped byte anywhere in the envelope is refused as an id mismatch', async () => {
  const raw = bytes(oneRendition.envelope_hex)
  for (const at of [0, 1, 40, Math.floor(raw.length / 2), raw.length - 1]) {
    const bad = raw.slice()
    bad[at] ^= 0x01
    await refused(verifyManifest(bad, oneRendition.message_id_hex), /id is/)
  }
  await refused(verifyManifest(raw, manifests[1].message_id_hex), /id is/)
})

test('test_invalid_signature: a flipped signature bit is refused, even under the right id', async () => {
  const sig = oneRendition.signature_hex
  const flipped = (parseInt(sig.slice(0, 2), 16) ^ 0x80).toString(16).padStart(2, '0') + sig.slice(2)
  const { raw, id } = edited(oneRendition, sig, flipped)
  await refused(verifyManifest(raw, id), /bad signature/)
})

test('test_invalid_signature: a changed body under the old signature is refused', async () => {
  const title = Buffer.from('Sunrise over the harbour').toString('hex')
  const { raw, id } = edited(oneRendition, title, Buffer.from('Sunset over the harbour!').toString('hex'))
  await refused(verifyManifest(raw, id), /bad signature/)
})

test('test_invalid_signature: S + L (a malleable twin) is refused, as libsodium does', async () => {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n
  const sig = bytes(oneRendition.signature_hex)
  let s = 0n
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i])
  s += L
  const twin = sig.slice()
  for (let i = 32; i < 64; i++) { twin[i] = Number(s & 0xffn); s >>= 8n }
  const pub = bytes(oneRendition.public_key_hex)
  const input = bytes(oneRendition.signing_input_hex)
  assert.equal(await verifyEd25519(pub, input, sig), true)
  assert.equal(await verifyEd25519(pub, input, twin), false)
  // The neutral point as key and R, with S = 0, satisfies the equation for every message.
  const neutral = new Uint8Array(32)
  neutral[0] = 1
  const forged = new Uint8Array(64)
  forged.set(neutral)
  assert.equal(await verifyEd25519(neutral, input, forged), false)
})

test('test_invalid_kind: a valid envelope of another kind is not a manifest', async () => {
  const follow = load('follow.json').vectors[0]
  await refused(verifyManifest(bytes(follow.envelope_hex), follow.message_id_hex), /a follow, not a manifest/)
})

test('test_invalid_truncated: a truncated envelope is refused', async () => {
  const raw = bytes(oneRendition.envelope_hex).subarray(0, 500)
  await refused(verifyManifest(raw, hex(sha256(raw))), /truncated/)
})

// The rules of docs/protocol.md section 7 the page applies: 1 to 8 for any kind, and a
// manifest's own (11 to 19). The time rules (9, 10) and other kinds' content rules are
// the node's: the page plays manifests only, and its clock proves nothing.
const PAGE_RULES = [
  'The envelope is the canonical encoding of an envelope record.',
  'The envelope version is one this node speaks.',
  'The kind is a known kind.',
  "The body is at most its kind's size limit.",
  'The signature verifies over the domain tag and the body bytes received.',
  "The body is the canonical encoding of the kind's record.",
  "The signer is the record's author.",
  'The title is not blank and holds no control characters.',
  'The description holds no control characters other than newlines.',
  'The license holds no control characters.',
  'Tags are distinct, non-empty, without ASCII capitals or white space.',
  'remix_of is empty or a message id.',
  'Rendition names are distinct and hold no control characters.',
  'The thumbnail, init and media segments are named by content ids.',
  'The codecs string uses only letters, digits, dots and commas.',
  "Each rendition's segments add up to the manifest's duration."
]

// What the page says for each invalid vector: refused, and for the rule it breaks.
const REFUSALS = {
  'envelope-not-msgpack': /forbidden type byte/,
  'envelope-trailing-byte': /trailing bytes/,
  'envelope-keys-unsorted': /not in strictly increasing order/,
  'envelope-unknown-field': /envelope is not a map of exactly/,
  'envelope-signature-63-bytes': /sig: bytes of 64/,
  'envelope-version-2': /envelope version 2/,
  'kind-unknown': /unknown kind/,
  'body-not-canonical': /shortest form/,
  'body-unknown-field': /body is not a map of exactly/,
  'body-oversize': /body is at most 256 bytes/,
  'body-of-another-kind': /body is not a map of exactly/,
  'signer-not-author': /signer is not the author/,
  'signature-flipped-bit': /bad signature/,
  'follow-relabelled-unfollow': /bad signature/,
  'title-blank': /title is blank/,
  'title-bidi-override': /title holds a control character/,
  'description-bell': /description holds a control character/,
  'license-tab': /license holds a control character/,
  'tag-upper-case': /upper case/,
  'tag-repeated': /tag is repeated/,
  'remix-of-16-bytes': /remix_of is not a message id/,
  'rendition-names-repeat': /two renditions share a name/,
  'thumbnail-not-cid': /thumbnail: not a content id/,
  'codecs-with-space': /letters, digits, dots and commas only/,
  'segments-too-short': /segments last 5500 ms/
}

test('test_invalid_vectors: every invalid vector breaking a rule the page applies is refused for it', async () => {
  const vectors = load('invalid.json').vectors
  const checked = vectors.filter((v) => PAGE_RULES.some((rule) => v.rule.startsWith(rule.slice(0, -1))))
  assert.deepEqual(checked.map((v) => v.name).sort(), Object.keys(REFUSALS).sort())
  for (const vector of checked) {
    const raw = bytes(vector.envelope_hex)
    const opening = openEnvelope(raw).then((opened) => {
      if (opened.kind === 'manifest') return verifyManifest(raw, hex(sha256(raw)))
      return opened
    })
    await refused(opening, REFUSALS[vector.name])
  }
})

test('a chunk is accepted only with its size and hash', async () => {
  const r = oneRendition.record.renditions[0]
  const ref = (c) => ({ cid: bytes(c.cid), size: c.size })
  await verifyChunk(fakeChunk('720p init', 812), ref(r.init))
  await verifyChunk(fakeChunk('720p segment 0', 625000), ref(r.segments[0]))
  await verifyChunk(fakeChunk('thumbnail', 24000), ref(oneRendition.record.thumbnail))
  const seg2 = remix.record.renditions[0].segments[1]
  await verifyChunk(fakeChunk('360p segment 1', seg2.size), ref(seg2))
})

test('test_invalid_chunk: a flipped byte, a short or a long chunk, another chunk are refused', async () => {
  const seg = oneRendition.record.renditions[0].segments[0]
  const ref = { cid: bytes(seg.cid), size: seg.size }
  const good = fakeChunk('720p segment 0', seg.size)
  const flipped = good.slice()
  flipped[1234] ^= 0x40
  await refused(verifyChunk(flipped, ref), /does not hash to its cid/)
  await refused(verifyChunk(good.subarray(0, seg.size - 1), ref), /bytes, the manifest says/)
  const longer = new Uint8Array(seg.size + 1)
  longer.set(good)
  await refused(verifyChunk(longer, ref), /bytes, the manifest says/)
  await refused(verifyChunk(fakeChunk('720p segment 1', seg.size), ref), /does not hash/)
})
