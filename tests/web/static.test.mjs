// The web app's files as shipped: every module parses and imports names that exist, and
// nothing needs what the page's Content-Security-Policy forbids (inline scripts or
// styles, eval, HTML strings, anything from another origin).

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { test } from 'node:test'

const STATIC = new URL('../../node/gateway/static/', import.meta.url)
const files = readdirSync(STATIC)
const modules = files.filter((f) => f.endsWith('.js'))
const read = (name) => readFileSync(new URL(name, STATIC), 'utf8')
// Modules that touch the DOM as they load; every other one node can import.
const LOADS_DOM = ['app.js']

test('the app is there', () => {
  for (const name of ['index.html', 'style.css', 'app.js', 'player.js', 'msgpack.js', 'verify.js']) {
    assert.ok(files.includes(name), name)
  }
})

test('every module parses', () => {
  for (const name of modules) {
    const run = spawnSync(process.execPath, ['--check', new URL(name, STATIC).pathname], { encoding: 'utf8' })
    assert.equal(run.status, 0, `${name}: ${run.stderr}`)
  }
})

test('every import names a module of the app and names it exports', async () => {
  const importRe = /^import\s+(?:\{([^}]*)\}\s+from\s+)?'([^']+)'/gm
  for (const name of modules) {
    for (const [, names, target] of read(name).matchAll(importRe)) {
      assert.match(target, /^\.\/[a-z]+\.js$/, `${name} imports ${target}: only the app's own modules`)
      const file = target.slice(2)
      assert.ok(files.includes(file), `${name} imports ${target}, which is missing`)
      assert.ok(!LOADS_DOM.includes(file), `${name} imports ${file}`)
      const exported = await import(new URL(file, STATIC))
      for (const imported of (names ?? '').split(',').map((n) => n.trim()).filter(Boolean)) {
        assert.ok(imported in exported, `${name} imports ${imported} from ${file}, which does not export it`)
      }
    }
  }
})

test('index.html: module script and style sheet from /static/, nothing inline', () => {
  const html = read('index.html')
  assert.match(html, /<script type="module" src="\/static\/app\.js"><\/script>/)
  assert.match(html, /<link rel="stylesheet" href="\/static\/style\.css">/)
  for (const script of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
    assert.match(script[1], /\bsrc="\/static\/[a-z]+\.js"/, 'every script is a file of the app')
    assert.equal(script[2].trim(), '', 'no inline script')
  }
  assert.doesNotMatch(html, /<style\b/i)
  assert.doesNotMatch(html, /\sstyle\s*=/i)
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i)
  for (const [, url] of html.matchAll(/(?:src|href)="([^"]*)"/g)) {
    assert.match(url, /^(\/static\/|#|data:,$)/, `${url}: the node's own origin only`)
  }
})

test('scripts: no eval, no HTML strings, no inline styles, no other origin', () => {
  const forbidden = [
    [/\beval\s*\(/, 'eval'],
    [/new\s+Function\b/, 'new Function'],
    [/\.(innerHTML|outerHTML)\b/, 'HTML strings'],
    [/insertAdjacentHTML|document\.write/, 'HTML strings'],
    [/setAttribute\(\s*'style'/, 'a style attribute'],
    [/setTimeout\(\s*['"`]/, 'code in a string'],
    [/\b(?:https?|wss?):\/\//, 'another origin'],
    [/\bimport\s*\(/, 'a dynamic import']
  ]
  for (const name of modules) {
    const code = read(name)
    for (const [re, what] of forbidden) assert.doesNotMatch(code, re, `${name}: ${what}`)
  }
})

test('style.css: nothing from another origin', () => {
  const css = read('style.css')
  assert.doesNotMatch(css, /@import|url\(\s*['"]?(?:https?:)?\/\//)
})
