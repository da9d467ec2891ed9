// #/wallet: the owner's balances and history (GET /api/balance, /api/history), creating a
// token (POST /api/tokens) and sending one (POST /api/transfer). Amounts are whole base
// units on the wire; only the display places the decimal point.

import { getJson, postJson } from './api.js'
import { formatAmount, formatTime, parseAmount, shortAccount } from './format.js'
import { accountLink, act, h, put, writeButton } from './ui.js'

const HISTORY_LIMIT = 50

export async function walletPage ({ main, signal }) {
  const balances = h('div', { class: 'balances' })
  const history = h('div', { class: 'history' })
  const tokenChoice = h('select', { testid: 'transfer-token' })
  main.append(
    h('h1', {}, 'Wallet'),
    balances,
    h('div', { class: 'forms' }, transferForm(tokenChoice, reload), createTokenForm(reload)),
    h('h2', {}, 'History'),
    history
  )

  async function reload () {
    const [balance, tokens, past] = await Promise.all([
      getJson('/api/balance', signal),
      getJson('/api/tokens', signal),
      getJson(`/api/history?limit=${HISTORY_LIMIT}`, signal)
    ])
    showBalances(balances, balance)
    showHistory(history, past)
    const chosen = tokenChoice.value
    tokenChoice.replaceChildren(...tokens.tokens.map((t) =>
      h('option', { value: t.platform ? '' : t.token }, `${t.symbol} (${t.platform ? 'platform' : shortAccount(t.token)})`)))
    if ([...tokenChoice.options].some((o) => o.value === chosen)) tokenChoice.value = chosen
  }
  await reload()
}

function showBalances (el, balance) {
  const rows = balance.balances ?? []
  el.replaceChildren()
  put(el,
    h('p', {}, 'Account ', accountLink(balance.account), ` · next order ${balance.next_seq}`),
    rows.length === 0
      ? h('p', { class: 'empty', testid: 'balances' }, 'No tokens yet.')
      : h('table', { testid: 'balances' },
        h('thead', {}, h('tr', {}, h('th', {}, 'token'), h('th', {}, 'amount'), h('th', {}, 'id'))),
        h('tbody', {}, rows.map((r) => h('tr', {},
          h('td', {}, r.symbol, r.name ? ` · ${r.name}` : ''),
          h('td', { class: 'amount' }, formatAmount(r.amount, r.decimals)),
          h('td', { class: 'mono', title: r.token }, r.platform ? 'platform' : shortAccount(r.token))
        )))
      )
  )
}

function showHistory (el, past) {
  const entries = past.history ?? []
  if (entries.length === 0) {
    el.replaceChildren(h('p', { class: 'empty' }, 'No orders yet.'))
    return
  }
  el.replaceChildren(h('ol', { class: 'entries', testid: 'history' }, entries.map((e) =>
    h('li', {},
      h('span', { class: 'when' }, formatTime(e.created_ms)), ' ',
      h('span', { class: 'kind' }, e.kind), ' ',
      (e.changes ?? []).map((c) => h('span', { class: `change ${String(c.amount).startsWith('-') ? 'out' : 'in'}` },
        `${c.text} ${c.symbol}`, c.counterpart ? [' ', c.amount < 0 ? 'to ' : 'from ', accountLink(c.counterpart)] : ''
      )),
      h('span', { class: 'mono order', title: e.order_id }, ` ${String(e.order_id).slice(0, 12)}…`)
    ))))
}

function transferForm (tokenChoice, reload) {
  const to = h('input', { type: 'text', testid: 'transfer-to', placeholder: 'tt…', size: 40 })
  const amount = h('input', { type: 'text', inputmode: 'numeric', testid: 'transfer-amount', placeholder: 'base units' })
  const button = writeButton(h('button', { type: 'submit', testid: 'transfer-button' }, 'send'))
  const form = h('form', { class: 'card' }, h('h2', {}, 'Send'),
    h('label', {}, 'To ', to), h('label', {}, 'Amount ', amount), h('label', {}, 'Token ', tokenChoice), button)
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    act(button, 'sending…', async () => {
      const value = parseAmount(amount.value)
      const body = { to: to.value.trim(), amount: value }
      if (tokenChoice.value) body.token = tokenChoice.value
      const r = await postJson('/api/transfer', body)
      await reload()
      return `sent ${value} base units to ${shortAccount(body.to)} (order ${String(r.order_id).slice(0, 12)}…)`
    })
  })
  return form
}

function createTokenForm (reload) {
  const symbol = h('input', { type: 'text', testid: 'token-symbol', size: 8, placeholder: 'FAN' })
  const name = h('input', { type: 'text', testid: 'token-name', placeholder: 'My fan token' })
  const supply = h('input', { type: 'text', inputmode: 'numeric', testid: 'token-supply', placeholder: 'base units' })
  const decimals = h('input', { type: 'number', testid: 'token-decimals', min: 0, max: 18, value: 0 })
  const button = writeButton(h('button', { type: 'submit', testid: 'token-button' }, 'create'))
  const form = h('form', { class: 'card' }, h('h2', {}, 'Create a token'),
    h('label', {}, 'Symbol ', symbol), h('label', {}, 'Name ', name), h('label', {}, 'Supply ', supply),
    h('label', {}, 'Decimals ', decimals), button)
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    act(button, 'creating the token…', async () => {
      const places = Number(decimals.value)
      if (!Number.isInteger(places) || places < 0) throw new Error('decimals: a whole number')
      const body = {
        symbol: symbol.value.trim(),
        name: name.value.trim(),
        supply: parseAmount(supply.value, 'supply'),
        decimals: places
      }
      const r = await postJson('/api/tokens', body)
      await reload()
      return `created ${body.symbol}` + (r.token ? `: token ${String(r.token).slice(0, 12)}…` : '')
    })
  })
  return form
}
