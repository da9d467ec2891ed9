// #/upload: the file goes to the node in 4 MiB slices (POST /api/uploads, PUT
// /api/uploads/<id>?offset=N), then publish starts the node's ingest, whose progress the
// page polls (GET /api/uploads/<id>) until the new video's id comes back.

import { getJson, postJson, putBytes, seg } from './api.js'
import { formatBytes, parseTags } from './format.js'
import { act, h, setStatus, writeButton } from './ui.js'

export const SLICE_BYTES = 4 * 1024 * 1024
const SLICE_TRIES = 3
const POLL_MS = 500

export function uploadPage ({ main, signal }) {
  const file = h('input', { type: 'file', accept: 'video/*', testid: 'upload-file' })
  const title = h('input', { type: 'text', testid: 'upload-title', maxlength: 150, required: true })
  const description = h('textarea', { testid: 'upload-description', rows: 4, maxlength: 2000 })
  const tags = h('input', { type: 'text', testid: 'upload-tags', placeholder: 'sunrise, harbour' })
  const sent = h('progress', { testid: 'upload-progress', max: 1, value: 0 })
  const sentText = h('span', { class: 'progress-text' })
  const ingest = h('progress', { testid: 'ingest-progress', max: 1, value: 0 })
  const ingestText = h('span', { class: 'progress-text', testid: 'ingest-phase' })
  const result = h('p', { class: 'result', testid: 'upload-result' })
  const button = writeButton(h('button', { type: 'submit', testid: 'upload-button' }, 'upload and publish'))
  const form = h('form', { class: 'upload' },
    h('label', {}, 'Video file ', file),
    h('label', {}, 'Title ', title),
    h('label', {}, 'Description ', description),
    h('label', {}, 'Tags ', tags),
    button,
    h('div', { class: 'progress' }, h('span', { class: 'label' }, 'upload'), sent, sentText),
    h('div', { class: 'progress' }, h('span', { class: 'label' }, 'ingest'), ingest, ingestText),
    result
  )
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    act(button, 'uploading…', async () => {
      const chosen = file.files[0]
      if (!chosen) throw new Error('choose a video file first')
      if (!title.value.trim()) throw new Error('a title is required')
      result.replaceChildren()
      const meta = { title: title.value.trim(), description: description.value, tags: parseTags(tags.value) }
      const id = await send(chosen, signal, (done) => {
        sent.value = done / Math.max(chosen.size, 1)
        sentText.textContent = `${formatBytes(done)} of ${formatBytes(chosen.size)}`
      })
      await postJson(`/api/uploads/${seg(id)}/publish`, meta, signal)
      setStatus('publishing: the node is transcoding…', 'busy')
      const done = await poll(id, signal, (phase, fraction) => {
        ingest.value = fraction
        ingestText.textContent = `${phase} ${Math.round(fraction * 100)}%`
      })
      const videoId = done.id ?? done.video?.id
      ingest.value = 1
      result.replaceChildren('Published: ', h('a', { href: `#/watch/${seg(videoId)}`, testid: 'upload-link' }, done.video?.title ?? videoId))
      return 'published'
    })
  })
  main.append(h('h1', {}, 'Upload'), form)
}

/** Send the file slice by slice; returns the upload id. A failed slice resumes from what the node holds. */
async function send (file, signal, progress) {
  const { id } = await postJson('/api/uploads', { size: file.size, name: file.name }, signal)
  let offset = 0
  progress(0)
  while (offset < file.size) {
    const end = Math.min(offset + SLICE_BYTES, file.size)
    for (let attempt = 1; ; attempt++) {
      try {
        await putBytes(`/api/uploads/${seg(id)}?offset=${offset}`, file.slice(offset, end), signal)
        offset = end
        break
      } catch (err) {
        // A refusal is final, but for a conflict about the offset: then the node says where it is.
        const refused = err.status >= 400 && err.status < 500 && err.status !== 409
        if (err.name === 'AbortError' || attempt >= SLICE_TRIES || refused) throw err
        offset = (await getJson(`/api/uploads/${seg(id)}`, signal)).received ?? offset
        if (offset >= end) break
      }
    }
    progress(offset)
  }
  return id
}

/** Poll the ingest until it gives a result (returned) or an error (thrown). */
async function poll (id, signal, progress) {
  for (;;) {
    const s = await getJson(`/api/uploads/${seg(id)}`, signal)
    if (s.error) throw new Error(`publish failed: ${s.error}`)
    if (s.result) return s.result
    if (s.phase) progress(s.phase, Number(s.fraction ?? 0))
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, POLL_MS)
      signal.addEventListener('abort', () => { clearTimeout(timer); reject(new DOMException('left the page', 'AbortError')) }, { once: true })
    })
  }
}
