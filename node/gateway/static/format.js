// How values look to people, and JSON with integers of any size. No DOM: node's test
// runner imports it too (tests/web/format.test.mjs).

/** The short form of an account text, as node/render.py's short_account writes it. */
export function shortAccount (text) {
  return typeof text === 'string' && text.length > 16 ? `${text.slice(0, 10)}…${text.slice(-4)}` : String(text)
}

/** `amount` base units (a number, BigInt or decimal string) with `decimals` places. */
export function formatAmount (amount, decimals = 0) {
  let n = BigInt(amount)
  const sign = n < 0n ? '-' : ''
  if (n < 0n) n = -n
  if (!decimals) return sign + n.toString()
  const unit = 10n ** BigInt(decimals)
  return `${sign}${n / unit}.${(n % unit).toString().padStart(decimals, '0')}`
}

export const AMOUNT_MAX = 2n ** 63n - 1n

/**
 * A whole number of base units typed by a person: a number when it is a safe integer, a
 * BigInt above that. Throws Error with a message to show.
 */
export function parseAmount (text, what = 'amount') {
  const t = String(text).trim()
  if (!/^[0-9]+$/.test(t)) throw new Error(`${what}: a whole number of base units`)
  const n = BigInt(t)
  if (n < 1n || n > AMOUNT_MAX) throw new Error(`${what}: 1 to ${AMOUNT_MAX} base units`)
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n
}

/** JSON.stringify that writes a BigInt as the integer it is (JSON itself has no limit). */
export function encodeJson (value) {
  const marks = []
  const text = JSON.stringify(value, (_, v) => {
    if (typeof v !== 'bigint') return v
    marks.push(v.toString())
    return `\u0000bigint${marks.length - 1}`
  })
  return text.replace(/"\\u0000bigint(\d+)"/g, (_, i) => marks[Number(i)])
}

/**
 * JSON.parse that keeps integers above 2^53 exact, as BigInt, where the engine gives the
 * reviver the source text (Chromium does); elsewhere they stay (rounded) numbers.
 */
export function decodeJson (text) {
  return JSON.parse(text, (_, v, context) => {
    if (typeof v === 'number' && !Number.isSafeInteger(v) && /^-?[0-9]+$/.test(context?.source ?? '')) {
      return BigInt(context.source)
    }
    return v
  })
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB']

export function formatBytes (n) {
  let value = Number(n)
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit += 1
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`
}

export function formatDuration (ms) {
  const s = Math.floor(Number(ms) / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

export function formatTime (ms) {
  const date = new Date(Number(ms))
  return Number.isNaN(date.getTime()) ? String(ms) : date.toLocaleString()
}

/** Tags as a person types them ("Sunset, beach  city"): lower case, no repeats. */
export function parseTags (text) {
  const tags = String(text).toLowerCase().split(/[\s,]+/).filter((t) => t !== '')
  return [...new Set(tags)]
}
