// Amounts, JSON with large integers and the small text helpers of the web app.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import {
  decodeJson, encodeJson, formatAmount, formatBytes, formatDuration, parseAmount, parseTags, shortAccount
} from '../../node/gateway/static/format.js'

test('formatAmount places the decimal point as node/ledgerview.py does', () => {
  const cases = [
    [1234, 2, '12.34'], [5, 2, '0.05'], [-5, 2, '-0.05'], [1234, 0, '1234'], [0, 3, '0.000'],
    [2n ** 63n - 1n, 9, '9223372036.854775807'], ['100', 1, '10.0']
  ]
  for (const [amount, decimals, want] of cases) assert.equal(formatAmount(amount, decimals), want)
})

test('parseAmount takes whole base units, BigInt past 2^53', () => {
  assert.equal(parseAmount(' 42 '), 42)
  assert.equal(parseAmount('9007199254740993'), 9007199254740993n)
  assert.equal(parseAmount('9223372036854775807'), 2n ** 63n - 1n)
})

test('test_invalid_amount: zero, negatives, fractions, text and too much are refused', () => {
  for (const bad of ['', '0', '-1', '1.5', '1e3', 'ten', '9223372036854775808']) {
    assert.throws(() => parseAmount(bad), /base units/, JSON.stringify(bad))
  }
})

test('encodeJson writes BigInt as a JSON integer; decodeJson reads it back', () => {
  const text = encodeJson({ amount: 2n ** 63n - 1n, list: [1n, 'x'], n: 3 })
  assert.equal(text, '{"amount":9223372036854775807,"list":[1,"x"],"n":3}')
  const back = decodeJson(text)
  assert.equal(back.n, 3)
  // Engines that give the reviver the source text keep the exact value; others round.
  assert.ok(back.amount === 2n ** 63n - 1n || back.amount === 9223372036854775807)
})

test('text helpers', () => {
  assert.equal(shortAccount('ttaoqqpp7tzyil4hlq3umoos6atft6jvrqtosq2xy53sdgiesvgg4con3ru4'), 'ttaoqqpp7t…3ru4')
  assert.equal(formatBytes(999), '999 B')
  assert.equal(formatBytes(1500000), '1.5 MB')
  assert.equal(formatDuration(65500), '1:05')
  assert.deepEqual(parseTags(' Sunrise, harbour  sunrise,,café '), ['sunrise', 'harbour', 'café'])
})
