// #/node: what the node is doing (GET /api/node): peers, storage, the videos it seeds and
// its WebRTC service, refreshed while the page is open.

import { getJson, seg } from './api.js'
import { formatBytes } from './format.js'
import { facts, h } from './ui.js'

const REFRESH_MS = 3000

export async function nodePage ({ main, signal }) {
  const body = h('div', { class: 'node' })
  main.append(h('h1', {}, 'Node'), body)
  const show = (reply) => body.replaceChildren(...render(reply))
  show(await getJson('/api/node', signal))
  const timer = setInterval(() => {
    getJson('/api/node', signal).then(show, () => {}) // the next tick tries again
  }, REFRESH_MS)
  return () => clearInterval(timer)
}

function render ({ status = {}, peers = {}, seeding = [], rtc = null, segments = null }) {
  const peerList = peers.peers ?? []
  return [
    h('section', { testid: 'node-status' }, h('h2', {}, 'Status'), facts([
      ['peer id', h('span', { class: 'mono' }, status.peer_id ?? '?')],
      ['peers connected', String(status.peers ?? peerList.length)],
      ['peers known', String(peers.known ?? '?')],
      ['videos', String(status.videos ?? '?')],
      ['chunks', String(status.chunks ?? '?')],
      ['storage used', status.store_bytes === undefined ? '?' : formatBytes(status.store_bytes)],
      ['videos seeded', String(seeding.length)],
      ['chunks served', String(status.chunks_served ?? '?')]
    ])),
    h('section', { testid: 'node-peers' }, h('h2', {}, `Peers (${peerList.length})`),
      peerList.length
        ? h('ul', { class: 'peers' }, peerList.map((p) => h('li', {},
          h('span', { class: 'mono' }, p.peer_id), (p.addrs ?? []).length ? h('div', { class: 'addrs mono' }, p.addrs.join(' ')) : null)))
        : h('p', { class: 'empty' }, 'No peers connected.')),
    h('section', { testid: 'node-seeding' }, h('h2', {}, `Seeding (${seeding.length})`),
      seeding.length
        ? h('ul', { class: 'seeding' }, seeding.map((v) => h('li', {},
          h('a', { href: `#/watch/${seg(v.id)}` }, v.title ?? v.id),
          v.chunks_held !== undefined ? ` · ${v.chunks_held}${v.chunks ? ` of ${v.chunks}` : ''} chunks held` : '')))
        : h('p', { class: 'empty' }, 'Seeding nothing.')),
    h('section', { testid: 'node-rtc' }, h('h2', {}, 'WebRTC'),
      rtc === null ? h('p', { class: 'empty' }, 'WebRTC is off on this node.') : table(rtc),
      segments === null ? null : table(segments))
  ]
}

/** Any JSON object as nested definition lists: the RTC stats' shape is the server's to choose. */
function table (value) {
  if (value === null || typeof value !== 'object') return String(value)
  if (Array.isArray(value)) return value.length ? h('ol', {}, value.map((v) => h('li', {}, table(v)))) : 'none'
  const entries = Object.entries(value)
  return entries.length ? facts(entries.map(([k, v]) => [k, table(v)])) : 'none'
}
