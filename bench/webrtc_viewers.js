// Load for bench/webrtc.py, evaluated in a Chromium page served by the node (same origin):
// data-channel clients that speak the player's protocol (docs/api.md, "Streaming") without
// decoding video, so that the browser's CPU goes to the transport and the figures are the
// node's. Two entry points, each an async function of one argument object:
//
//   throughput({video, cids, inFlight}): one connection fetches every chunk in `cids`,
//     `inFlight` at a time; returns {bytes, ms, connectMs}.
//   viewers({video, cids, count, arrivalsPerS, seconds, bitsPerS, bufferS, startS}):
//     `count` connections opened `arrivalsPerS` a second, each a simulated player draining its buffer at `bitsPerS` (a chunk of
//     B bytes holds B*8/bitsPerS seconds of playback), asking for the next chunk (cycling
//     through `cids`) while it holds less than `bufferS` seconds ahead, and playing once
//     `startS` seconds are buffered. A stall is the buffer running dry while playing.
//     Returns per-viewer {stalls, stallMs, bytes, startMs, connectMs, error}.
/* eslint-env browser */
(() => {
  const HEADER = 12;

  async function connect() {
    const started = performance.now();
    const pc = new RTCPeerConnection({ iceServers: [] });
    const channel = pc.createDataChannel("toktok", { ordered: true });
    channel.binaryType = "arraybuffer";
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
    });
    const reply = await fetch("/api/rtc", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }),
      credentials: "same-origin",
    });
    const answer = await reply.json();
    if (!reply.ok) throw new Error(answer.error || `rtc ${reply.status}`);
    await pc.setRemoteDescription(answer);
    await new Promise((resolve, reject) => {
      if (channel.readyState === "open") return resolve();
      channel.addEventListener("open", resolve);
      channel.addEventListener("close", () => reject(new Error("channel closed")));
    });
    const pending = new Map();
    let next = 1;
    channel.addEventListener("message", (event) => {
      if (typeof event.data === "string") {
        const msg = JSON.parse(event.data);
        const p = pending.get(msg.id);
        if (p) { pending.delete(msg.id); p.reject(new Error(msg.error)); }
        return;
      }
      const view = new DataView(event.data);
      const id = view.getUint32(0), offset = view.getUint32(4), total = view.getUint32(8);
      const p = pending.get(id);
      if (!p) return;
      p.got += event.data.byteLength - HEADER;
      if (offset + event.data.byteLength - HEADER >= total && p.got >= total) {
        pending.delete(id);
        p.resolve(total);
      }
    });
    const ask = (video, cid) => new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject, got: 0 });
      channel.send(JSON.stringify({ id, video, cid }));
    });
    return { pc, ask, connectMs: performance.now() - started };
  }

  async function throughput({ video, cids, inFlight }) {
    const conn = await connect();
    const started = performance.now();
    let bytes = 0, index = 0;
    async function worker() {
      while (index < cids.length) {
        const cid = cids[index++];
        const n = await conn.ask(video, cid); // (not `bytes += await`: that reads bytes first)
        bytes += n;
      }
    }
    await Promise.all(Array.from({ length: inFlight }, worker));
    const ms = performance.now() - started;
    conn.pc.close();
    return { bytes, ms, connectMs: conn.connectMs };
  }

  async function viewer({ video, cids, seconds, bitsPerS, bufferS, startS }) {
    const out = { stalls: 0, stallMs: 0, bytes: 0, startMs: null, connectMs: null, error: null };
    let conn;
    try {
      conn = await connect();
    } catch (e) {
      out.error = String(e);
      return out;
    }
    out.connectMs = conn.connectMs;
    const t0 = performance.now();
    let buffered = 0; // seconds of playback held ahead
    let playing = false, stalledAt = null, last = t0, index = 0, inFlight = 0;
    const end = t0 + seconds * 1000;
    await new Promise((resolve) => {
      const tick = () => {
        const now = performance.now();
        if (playing) {
          buffered -= (now - last) / 1000;
          if (buffered <= 0) {
            buffered = 0;
            playing = false;
            stalledAt = now;
            out.stalls += 1;
          }
        } else if (buffered >= startS) {
          playing = true;
          if (out.startMs === null) out.startMs = now - t0;
          if (stalledAt !== null) out.stallMs += now - stalledAt;
          stalledAt = null;
        }
        last = now;
        while (inFlight < 2 && buffered + inFlight * 2 < bufferS && now < end) {
          const cid = cids[index++ % cids.length];
          inFlight += 1;
          conn.ask(video, cid).then((n) => {
            inFlight -= 1;
            out.bytes += n;
            buffered += (n * 8) / bitsPerS;
          }, (e) => { inFlight -= 1; out.error = String(e); });
        }
        if (now >= end) {
          if (stalledAt !== null) out.stallMs += now - stalledAt;
          resolve();
          return;
        }
        setTimeout(tick, 50);
      };
      tick();
    });
    conn.pc.close();
    return out;
  }

  async function viewers(args) {
    const all = [];
    for (let i = 0; i < args.count; i++) {
      all.push(viewer(args));
      // People arrive `arrivalsPerS` a second, each then watching for `seconds`.
      await new Promise((r) => setTimeout(r, 1000 / args.arrivalsPerS));
    }
    return Promise.all(all);
  }

  window.toktokBench = { throughput, viewers };
})();
