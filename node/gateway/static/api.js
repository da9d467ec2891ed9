// The node's JSON API (SPEC.md "JSON API"): same-origin requests with the session cookie,
// errors as ApiError carrying the reply's {"error": message}.

import { decodeJson, encodeJson } from './format.js'

export class ApiError extends Error {
  constructor (status, message) {
    super(message)
    this.name = 'ApiError'
    this.status = status
  }
}

export const READ_ONLY = 'read-only: open the link the node printed to sign in'
export const SIGNED_OUT_EVENT = 'toktok:unauthorized'

async function reply (response, what) {
  const text = await response.text()
  let body = null
  try {
    body = text ? decodeJson(text) : {}
  } catch {
    // Not JSON: a proxy's page, or a crash; the status says enough.
  }
  if (!response.ok) {
    // The session may have ended (the node restarted): the app reads its state again.
    if (response.status === 401) globalThis.dispatchEvent?.(new Event(SIGNED_OUT_EVENT))
    const message = body && typeof body.error === 'string' ? body.error : `${response.status} ${response.statusText}`
    throw new ApiError(response.status, response.status === 401 ? `${message} (${READ_ONLY})` : message)
  }
  if (body === null || typeof body !== 'object') throw new ApiError(response.status, `${what}: not a JSON object`)
  return body
}

/** The raw response of one same-origin request; a network failure is an ApiError. */
async function send (method, path, { body, type, signal } = {}) {
  const init = { method, credentials: 'same-origin', signal, headers: {} }
  if (body !== undefined) {
    init.body = body
    init.headers['Content-Type'] = type
  }
  try {
    return await fetch(path, init)
  } catch (err) {
    if (err.name === 'AbortError') throw err
    throw new ApiError(0, `cannot reach the node: ${err.message}`)
  }
}

async function call (method, path, options) {
  return reply(await send(method, path, options), `${method} ${path}`)
}

export const getJson = (path, signal) => call('GET', path, { signal })

export const postJson = (path, value, signal) =>
  call('POST', path, { body: encodeJson(value), type: 'application/json', signal })

export const deleteJson = (path, signal) => call('DELETE', path, { signal })

export const putBytes = (path, blob, signal) =>
  call('PUT', path, { body: blob, type: 'application/octet-stream', signal })

/** The raw bytes of a GET, as a Uint8Array of at most `bytesMax` bytes. */
export async function getBytes (path, bytesMax, signal) {
  const response = await send('GET', path, { signal })
  if (!response.ok) return reply(response, `GET ${path}`)
  if (Number(response.headers.get('content-length')) > bytesMax) {
    throw new ApiError(response.status, `${path}: over ${bytesMax} bytes`)
  }
  const bytes = new Uint8Array(await response.arrayBuffer())
  if (bytes.length > bytesMax) throw new ApiError(response.status, `${path}: over ${bytesMax} bytes`)
  return bytes
}

/** The path segment for an id or account typed anywhere. */
export const seg = (text) => encodeURIComponent(String(text))
