// #/watch/<id>: the player, the video's details, and what a fan does: like, follow the
// creator, tip, buy the creator's token from their standing offer.

import { getJson, postJson, seg } from './api.js'
import { formatAmount, formatDuration, parseAmount, shortAccount } from './format.js'
import { Player } from './player.js'
import { accountLink, act, h, put, refreshWriters, writeButton } from './ui.js'

export async function watchPage ({ main, args, signal, session }) {
  const id = args[0] ?? ''
  const video = h('video', { testid: 'watch-video', controls: true, playsInline: true, preload: 'auto' })
  video.muted = true // muted autoplay is allowed everywhere; the button below unmutes
  const error = h('p', { class: 'player-error', testid: 'player-error', hidden: true, role: 'alert' })
  const unmute = h('button', { type: 'button', class: 'unmute' }, 'unmute')
  unmute.addEventListener('click', () => {
    video.muted = !video.muted
    unmute.textContent = video.muted ? 'unmute' : 'mute'
  })
  const info = h('div', { class: 'details' })
  main.append(h('section', { class: 'watch' },
    h('div', { class: 'player' }, video, h('div', { class: 'player-bar' }, unmute), error),
    info
  ))

  const player = new Player({
    video,
    id,
    showError: (text) => {
      error.textContent = text
      error.hidden = false
    }
  })
  player.start()
  const cleanup = () => player.destroy()

  try {
    const reply = await getJson(`/api/videos/${seg(id)}`, signal)
    showDetails(info, reply, session, signal)
  } catch (err) {
    if (err.name !== 'AbortError') info.append(h('p', { class: 'error' }, `cannot load this video's details: ${err.message}`))
  }
  return cleanup
}

function showDetails (info, reply, session, signal) {
  const v = reply.video
  const state = {
    liked: reply.liked ?? false,
    likes: reply.likes ?? null,
    following: reply.following_author ?? false
  }
  const own = () => session.account !== null && session.account === v.author

  const like = writeButton(h('button', { type: 'button', testid: 'like-button' }))
  const showLike = () => {
    like.textContent = state.liked ? 'unlike' : 'like'
    like.classList.toggle('on', state.liked)
    likes.textContent = state.likes === null ? '' : `${state.likes} like${state.likes === 1 ? '' : 's'}`
  }
  const likes = h('span', { class: 'likes' })
  like.addEventListener('click', () => act(like, state.liked ? 'unliking…' : 'liking…', async () => {
    const r = await postJson(state.liked ? '/api/unlike' : '/api/like', { id: v.id })
    if (state.likes !== null && r.liked !== state.liked) state.likes += r.liked ? 1 : -1
    state.liked = r.liked
    showLike()
    return r.liked ? 'liked' : 'like taken back'
  }))
  showLike()

  const follow = writeButton(h('button', { type: 'button', testid: 'follow-button' }), () => !own())
  const showFollow = () => {
    follow.textContent = own() ? 'your video' : state.following ? 'unfollow' : 'follow'
    follow.classList.toggle('on', state.following)
  }
  follow.addEventListener('click', () => act(follow, 'following…', async () => {
    const r = await postJson(state.following ? '/api/unfollow' : '/api/follow', { account: v.author })
    state.following = r.following
    showFollow()
    return `${r.following ? 'following' : 'no longer following'} ${shortAccount(v.author)}`
  }))
  showFollow()

  const tipAmount = h('input', { type: 'text', inputmode: 'numeric', testid: 'tip-amount', placeholder: 'base units', size: 10 })
  const tip = writeButton(h('button', { type: 'button', testid: 'tip-button' }, 'tip'))
  tip.addEventListener('click', () => act(tip, 'tipping…', async () => {
    const amount = parseAmount(tipAmount.value)
    const r = await postJson('/api/tip', { id: v.id, amount })
    return `tipped ${amount} to ${shortAccount(r.creator ?? v.author)} (order ${String(r.order_id).slice(0, 12)}…)`
  }))

  put(info,
    h('h1', { class: 'title' }, v.title),
    h('p', { class: 'byline' }, 'by ', accountLink(v.author), ` · ${formatDuration(v.duration_ms)}`),
    v.description ? h('p', { class: 'description' }, v.description) : null,
    v.tags?.length ? h('p', { class: 'tags' }, v.tags.map((t) => h('span', { class: 'tag' }, `#${t}`))) : null,
    h('div', { class: 'actions' },
      h('div', { class: 'row' }, like, likes, follow),
      h('div', { class: 'row' }, h('label', {}, 'Tip ', tipAmount), tip),
      buySection(v.author, signal)
    )
  )
}

/** The creator's standing offers (GET /api/offers, filtered here: the route takes no creator). */
function buySection (creator, signal) {
  const offerInfo = h('span', { class: 'offer' }, 'looking for an offer…')
  const amount = h('input', { type: 'text', inputmode: 'numeric', testid: 'buy-amount', placeholder: 'base units', size: 10 })
  let offer = null
  const buy = writeButton(h('button', { type: 'button', testid: 'buy-button' }, 'buy'), () => offer !== null)
  buy.addEventListener('click', () => act(buy, 'buying…', async () => {
    const want = parseAmount(amount.value)
    const r = await postJson('/api/buy', { offer: offer.offer, amount: want })
    const sym = offer.token.symbol
    return `bought ${formatAmount(r.amount, offer.token.decimals)} ${sym} for ${formatAmount(r.paid, offer.price_token.decimals)} ${offer.price_token.symbol}`
  }))
  getJson('/api/offers', signal).then((reply) => {
    const open = (reply.offers ?? []).filter((o) => o.creator === creator && !o.closed && BigInt(o.stock) > 0n)
    offer = open[0] ?? null
    offerInfo.textContent = offer
      ? `${offer.token.symbol}: ${offer.price_num}/${offer.price_den} ${offer.price_token.symbol} per unit, ` +
        `${formatAmount(offer.stock, offer.token.decimals)} in stock`
      : 'no offer of this creator\'s token'
    refreshWriters()
  }, (err) => {
    if (err.name !== 'AbortError') offerInfo.textContent = `no offers: ${err.message}`
  })
  return h('div', { class: 'row' }, h('label', {}, 'Buy the creator\'s token ', amount), buy, offerInfo)
}
