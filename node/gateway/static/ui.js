// Building the page: elements from data (never from HTML strings, so nothing a node or a
// peer wrote can become markup), the status line, and buttons that run one action.

import { READ_ONLY } from './api.js'
import { shortAccount } from './format.js'

/**
 * An element: `h('a', {href, testid: 'feed-item', class: 'x'}, 'text', child, ...)`.
 * Attributes go through setAttribute (or dataset for testid); children are text or nodes.
 */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name === 'testid') el.dataset.testid = value
    else if (name === 'class') el.className = value
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value)
    else if (name in el && typeof value !== 'string') el[name] = value
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue
    el.append(child instanceof Node ? child : String(child))
  }
  return el
}

/** Append `children` to `el`, skipping null, undefined and false (DOM append would write "null"). */
export function put (el, ...children) {
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false))
}

/** A link to an account's profile, showing its short form. */
export function accountLink (account) {
  return h('a', { href: `#/profile/${encodeURIComponent(account)}`, class: 'account', title: account }, shortAccount(account))
}

let statusEl = null

export function bindStatus (el) {
  statusEl = el
}

/** Say `text` in the status line; `kind` is 'ok', 'error' or 'busy'. */
export function setStatus (text, kind = 'ok') {
  if (!statusEl) return
  statusEl.textContent = text
  statusEl.className = `status ${kind}`
}

export function clearStatus () {
  setStatus('', 'ok')
}

// Write buttons follow the session: disabled when the page is read-only.
const writers = new Set()
let signedIn = false

export function writeButton (el, enabledIf = () => true) {
  el.classList.add('write')
  writers.add({ el, enabledIf })
  refreshWriter({ el, enabledIf })
  return el
}

function refreshWriter ({ el, enabledIf }) {
  el.disabled = !signedIn || !enabledIf()
  el.title = signedIn ? '' : READ_ONLY
}

export function setSignedIn (value) {
  signedIn = value
  for (const w of [...writers]) {
    if (!w.el.isConnected) writers.delete(w)
    else refreshWriter(w)
  }
}

/** Re-apply the rule of every write button (after a page changed what `enabledIf` reads). */
export function refreshWriters () {
  setSignedIn(signedIn)
}

/**
 * Run `fn` for a button press: the button is disabled meanwhile, the status line says
 * `busy` then what `fn` returns, or the error. Returns fn's result (undefined on error).
 */
export async function act (button, busy, fn) {
  if (button) button.disabled = true
  setStatus(busy, 'busy')
  try {
    const said = await fn()
    if (typeof said === 'string') setStatus(said, 'ok')
    else clearStatus()
    return said
  } catch (err) {
    if (err.name !== 'AbortError') setStatus(err.message, 'error')
    return undefined
  } finally {
    if (button?.classList.contains('write')) refreshWriters()
    else if (button) button.disabled = false
  }
}

/** A definition list from [label, value] pairs (values text or nodes). */
export function facts (pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))
}
