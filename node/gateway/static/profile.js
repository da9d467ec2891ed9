// #/profile/<account> (no account: the owner's): the account's videos, its followers, and
// a follow button.

import { getJson, postJson, seg } from './api.js'
import { shortAccount } from './format.js'
import { videoItem } from './feed.js'
import { accountLink, act, h, put, writeButton } from './ui.js'

const FOLLOWERS_LIMIT = 200

export async function profilePage ({ main, args, signal, session }) {
  const account = args[0] || session.account
  if (!account) {
    main.append(h('p', { class: 'empty' }, 'No account to show: the node did not say which is its own.'))
    return
  }
  const profile = await getJson(`/api/accounts/${seg(account)}`, signal)
  const own = session.account === profile.account
  let following = profile.following === true
  let followers = Number(profile.followers ?? 0)
  const count = h('span', { class: 'followers-count', testid: 'followers-count' })
  const follow = writeButton(h('button', { type: 'button', testid: 'follow-button' }), () => !own)
  const show = () => {
    const more = profile.followers_more ? '+' : ''
    count.textContent = `${followers}${more} follower${followers === 1 && !more ? '' : 's'}`
    follow.textContent = own ? 'this is you' : following ? 'unfollow' : 'follow'
    follow.classList.toggle('on', following)
  }
  follow.addEventListener('click', () => act(follow, 'following…', async () => {
    const r = await postJson(following ? '/api/unfollow' : '/api/follow', { account: profile.account })
    if (r.following !== following) followers += r.following ? 1 : -1
    following = r.following
    show()
    return `${following ? 'following' : 'no longer following'} ${shortAccount(profile.account)}`
  }))
  show()

  const videos = profile.videos ?? []
  const about = profile.profile ?? {}
  const list = h('ul', { class: 'followers' })
  put(main,
    h('h1', { class: 'account-title' }, about.name || (own ? 'Your profile' : 'Profile')),
    about.bio ? h('p', { class: 'description' }, about.bio) : null,
    h('p', { class: 'account-id', testid: 'profile-account' }, profile.account),
    h('p', { class: 'row' }, count, follow),
    h('h2', {}, `Videos (${videos.length})`),
    videos.length
      ? h('ol', { class: 'videos' }, videos.map((v) => videoItem({ ...v, creator: v.author ?? profile.account })))
      : h('p', { class: 'empty' }, 'No videos held here.'),
    h('h2', {}, 'Followers'),
    list
  )
  const reply = await getJson(`/api/accounts/${seg(profile.account)}/followers?limit=${FOLLOWERS_LIMIT}`, signal)
  const names = reply.followers ?? []
  if (names.length === 0) list.replaceWith(h('p', { class: 'empty' }, 'No followers known here.'))
  else list.append(...names.map((a) => h('li', {}, accountLink(a))))
}
