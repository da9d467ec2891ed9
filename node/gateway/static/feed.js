// #/feed: the owner's ranked feed (GET /api/feed), each item with why it is there; when
// the feed is empty, the videos this node holds (GET /api/videos).

import { getJson, seg } from './api.js'
import { formatDuration } from './format.js'
import { noteClick } from './player.js'
import { accountLink, h } from './ui.js'

const FEED_LIMIT = 50

/** One video in a list: thumbnail and title open it; the creator opens their profile. */
export function videoItem ({ id, title, creator, reasons = [], duration_ms: durationMs }) {
  const watch = `#/watch/${seg(id)}`
  const item = h('li', { class: 'video-item', testid: 'feed-item', 'data-video': id },
    h('a', { href: watch, class: 'thumb' },
      h('img', { src: `/api/videos/${seg(id)}/thumbnail`, alt: '', loading: 'lazy', width: 160, height: 90 }),
      durationMs ? h('span', { class: 'duration' }, formatDuration(durationMs)) : null
    ),
    h('div', { class: 'about' },
      h('a', { href: watch, class: 'title' }, title),
      h('div', { class: 'creator' }, 'by ', accountLink(creator)),
      reasons.length
        ? h('ul', { class: 'reasons' }, reasons.map((r) => h('li', {}, r.text)))
        : null
    )
  )
  // The click that opens a video starts the bench's clock (window.toktok.player.marks.click).
  item.addEventListener('click', (event) => {
    if (event.target.closest('a.account')) return
    noteClick(id)
    if (!event.target.closest('a')) location.hash = watch
  })
  return item
}

export async function feedPage ({ main, signal }) {
  const list = h('ol', { class: 'videos' })
  main.append(h('h1', {}, 'Feed'), list)
  const reply = await getJson(`/api/feed?limit=${FEED_LIMIT}`, signal)
  for (const item of reply.feed) list.append(videoItem(item))
  if (reply.feed.length > 0) return
  list.replaceWith(h('p', { class: 'empty' }, 'Nothing in your feed yet: follow creators, or watch what this node holds.'))
  const recent = await getJson(`/api/videos?limit=${FEED_LIMIT}`, signal)
  if (recent.videos.length === 0) {
    main.append(h('p', { class: 'empty' }, 'This node holds no videos yet. ', h('a', { href: '#/upload' }, 'Upload one'), '.'))
    return
  }
  main.append(
    h('h2', {}, 'On this node'),
    h('ol', { class: 'videos' }, recent.videos.map((v) => videoItem({ ...v, creator: v.author })))
  )
}
