// The web app: one page, routed by the URL fragment (#/feed, #/watch/<id>, #/upload,
// #/profile/<account>, #/wallet, #/node). #signin=<token> signs the owner in: the token
// goes to POST /api/session and leaves the address bar at once.

import { ApiError, SIGNED_OUT_EVENT, deleteJson, getJson, postJson } from './api.js'
import { feedPage } from './feed.js'
import { nodePage } from './nodeinfo.js'
import { closeConnection } from './player.js'
import { profilePage } from './profile.js'
import { bindStatus, clearStatus, h, setSignedIn, setStatus } from './ui.js'
import { uploadPage } from './upload.js'
import { walletPage } from './wallet.js'
import { watchPage } from './watch.js'

const ROUTES = {
  feed: feedPage,
  watch: watchPage,
  upload: uploadPage,
  profile: profilePage,
  wallet: walletPage,
  node: nodePage
}

export const session = { signedIn: false, account: null }

let current = null // {name, controller, cleanup}

function parseRoute (hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').map((p) => {
    try {
      return decodeURIComponent(p)
    } catch {
      return p
    }
  })
  const name = Object.hasOwn(ROUTES, parts[0]) ? parts[0] : 'feed'
  return { name, args: parts.slice(1) }
}

async function route (options = {}) {
  const { name, args } = parseRoute(location.hash)
  if (current) {
    current.controller.abort()
    try {
      current.cleanup?.()
    } catch (err) {
      console.error('leaving a page', err)
    }
    // The peer connection serves one watch page after another, and no other page.
    if (name !== 'watch') closeConnection()
  }
  const controller = new AbortController()
  current = { name, controller, cleanup: null }
  if (!options.keepStatus) clearStatus()
  for (const link of document.querySelectorAll('nav a')) {
    link.classList.toggle('current', link.dataset.route === name)
  }
  const main = document.getElementById('main')
  main.replaceChildren()
  try {
    const cleanup = await ROUTES[name]({ main, args, signal: controller.signal, session })
    if (controller.signal.aborted) cleanup?.()
    else current.cleanup = cleanup
  } catch (err) {
    if (err.name !== 'AbortError') setStatus(err.message, 'error')
  }
}

function showSession () {
  const el = document.querySelector('[data-testid="signin-state"]')
  el.replaceChildren()
  if (session.signedIn) {
    el.append(
      h('span', { class: 'who', title: session.account ?? '' }, `signed in as ${session.account ?? 'the node\'s owner'}`),
      h('button', { type: 'button', class: 'link', onclick: signOut }, 'sign out')
    )
  } else {
    el.append(h('span', { class: 'who' }, 'read-only: open the link the node printed'))
  }
  document.body.classList.toggle('read-only', !session.signedIn)
  setSignedIn(session.signedIn)
}

async function signOut () {
  try {
    await deleteJson('/api/session')
  } catch (err) {
    setStatus(`sign-out: ${err.message}`, 'error')
    return
  }
  session.signedIn = false
  showSession()
  setStatus('signed out')
}

async function signIn (token) {
  try {
    const reply = await postJson('/api/session', { token })
    setStatus(`signed in as ${reply.account}`)
  } catch (err) {
    const why = err instanceof ApiError && err.status === 401 ? 'the sign-in link is not valid (any more)' : err.message
    setStatus(`sign-in failed: ${why}`, 'error')
  }
}

async function loadSession () {
  try {
    const status = await getJson('/api/status')
    session.signedIn = status.signed_in === true
    session.account = status.account ?? null
  } catch (err) {
    session.signedIn = false
    setStatus(`cannot read the node's status: ${err.message}`, 'error')
  }
  showSession()
}

async function boot () {
  bindStatus(document.querySelector('[data-testid="status-line"]'))
  const signin = /^#signin=(.+)$/.exec(location.hash)
  if (signin) {
    // Out of the address bar (and the history) before anything else happens.
    history.replaceState(null, '', location.pathname + location.search)
    await signIn(decodeURIComponent(signin[1]))
  }
  await loadSession()
  window.addEventListener(SIGNED_OUT_EVENT, loadSession)
  window.addEventListener('hashchange', () => route())
  await route({ keepStatus: true })
}

globalThis.toktok = globalThis.toktok || {}
globalThis.toktok.session = session
boot()
