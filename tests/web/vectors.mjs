// The protocol test vectors (docs/protocol.md section 9), for the web app's tests.

import { readFileSync } from 'node:fs'

const DIR = new URL('../vectors/', import.meta.url)

export const load = (name) => JSON.parse(readFileSync(new URL(name, DIR), 'utf8'))
export const bytes = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'))
export const hex = (data) => Buffer.from(data).toString('hex')
export const KINDS = ['manifest', 'profile', 'tombstone', 'follow', 'unfollow', 'reaction', 'view', 'offer']

/** tests/vectors/samples.py fake_chunk: the label's UTF-8 bytes repeated, cut to `size`. */
export function fakeChunk (label, size) {
  const unit = Buffer.from(label, 'utf8')
  const out = Buffer.alloc(size)
  for (let i = 0; i < size; i++) out[i] = unit[i % unit.length]
  return new Uint8Array(out)
}

/** The decoded value in the vectors' tagged form ([type, payload]). */
export function tagged (value) {
  if (typeof value === 'number' || typeof value === 'bigint') return ['int', value.toString()]
  if (typeof value === 'boolean') return ['bool', value]
  if (typeof value === 'string') return ['str', value]
  if (value instanceof Uint8Array) return ['bin', hex(value)]
  if (Array.isArray(value)) return ['array', value.map(tagged)]
  return ['map', [...value].map(([k, v]) => [k, tagged(v)])]
}
