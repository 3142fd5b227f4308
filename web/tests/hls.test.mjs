// LL-HLS in Chromium with the vendored hls.js: the room page picks mpegts.js by default (MSE
// exists) and hls.js with `?player=hls`; hls.js in low-latency mode plays the live stream and
// the delay stays low. Delay is measured two ways each 500 ms: as latency.test.mjs does for FLV
// (`buffered.end - currentTime`) and from the server's clock (`Date.now() - hls.playingDate`, the
// EXT-X-PROGRAM-DATE-TIME of the frame on screen, stamped when the server received it).
// CI runs a short smoke (LIVEHOUSE_HLS_SECS, default 20 s); bench/hls_latency.sh runs 2 minutes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fatal, startServer, launch, newPage, pushFfmpeg, videoState, until, assertNoErrors, screenshot, sleep, apiAs } from './helpers.mjs';

const SECS = Number(process.env.LIVEHOUSE_HLS_SECS || 20);
const LL = process.env.LIVEHOUSE_HLS_LL !== '0';
const LIMIT = LL ? 3 : 8;

test(`hls.js (${LL ? 'low-latency' : 'plain'} HLS) plays the room with p95 delay ≤ ${LIMIT} s over ${SECS} s`, { timeout: (SECS + 120) * 1000 }, async () => {
  const server = await startServer();
  const browser = await launch();
  let ffmpeg;
  const errors = [];
  try {
    const tag = Date.now().toString(36).slice(-6);
    const anchor = await apiAs(server.base, '/user/register', { username: `hls_${tag}`, password: 'secret-password', nickname: 'HLS' });
    const { roomId } = (await apiAs(server.base, '/living/startingLiving', { type: 1, roomName: 'HLS check' }, anchor.cookie)).data;
    const cfg = (await apiAs(server.base, '/living/anchorConfig', { roomId }, anchor.cookie)).data;
    assert.equal(cfg.hlsUrl, `/live/${roomId}.m3u8`);
    ffmpeg = pushFfmpeg(cfg.pushUrl);

    // Default engine in Chromium (MSE exists): mpegts.js over HTTP-FLV.
    const flv = await newPage(browser, 'flv-viewer', errors);
    await flv.goto(`${server.base}/room.html?id=${roomId}`);
    await until('the default player to play', async () => {
      if (ffmpeg.exited) throw new Fatal(`ffmpeg exited ${JSON.stringify(ffmpeg.exited)}: ${ffmpeg.log}`);
      return (await flv.getAttribute('[data-testid=player]', 'data-state')) === 'playing';
    }, { timeoutMs: 40000, everyMs: 250 });
    assert.equal(await flv.getAttribute('[data-testid=player]', 'data-engine'), 'flv');
    await flv.close();

    const viewer = await newPage(browser, 'hls-viewer', errors);
    await viewer.goto(`${server.base}/room.html?id=${roomId}&player=hls${LL ? '' : '&ll=0'}`);
    await until('hls.js to play', async () => (await viewer.getAttribute('[data-testid=player]', 'data-state')) === 'playing',
      { timeoutMs: 40000, everyMs: 250 }).catch(async (e) => {
      throw new Error(`${e.message}\nplayer log: ${JSON.stringify(await viewer.evaluate(() => window.__playerLog))}`);
    });
    assert.equal(await viewer.getAttribute('[data-testid=player]', 'data-engine'), 'hlsjs');
    assert.equal(await viewer.evaluate(() => Boolean(window.Hls && window.__player.player instanceof window.Hls)), true, 'hls.js drives the video');

    const samples = [];
    const start = await videoState(viewer);
    const t0 = Date.now();
    while (Date.now() - t0 < SECS * 1000) {
      const v = await videoState(viewer);
      const delay = await viewer.evaluate(() => window.__player.liveDelay());
      if (v.bufferedEnd != null && delay != null) samples.push({ t: (Date.now() - t0) / 1000, buffered: v.bufferedEnd - v.currentTime, delay });
      if (ffmpeg.exited) throw new Error(`ffmpeg exited during the run: ${ffmpeg.log}`);
      await sleep(500);
    }
    const end = await videoState(viewer);
    const pct = (xs, p) => {
      const s = [...xs].sort((a, b) => a - b);
      return s[Math.min(s.length - 1, Math.floor(p * s.length))];
    };
    const delays = samples.map((s) => s.delay);
    const buffered = samples.map((s) => s.buffered);
    console.log(`${LL ? 'LL-HLS' : 'HLS'} over ${SECS} s, ${samples.length} samples: server-clock delay median ${pct(delays, 0.5).toFixed(2)} s, p95 ${pct(delays, 0.95).toFixed(2)} s, max ${Math.max(...delays).toFixed(2)} s; buffered.end - currentTime median ${pct(buffered, 0.5).toFixed(2)} s, p95 ${pct(buffered, 0.95).toFixed(2)} s; playhead advanced ${(end.currentTime - start.currentTime).toFixed(1)} s`);
    await screenshot(viewer, LL ? 'room-llhls' : 'room-hls');
    assert.ok(samples.length >= SECS, `enough samples (${samples.length})`);
    assert.ok(pct(delays, 0.95) <= LIMIT, `p95 delay ${pct(delays, 0.95).toFixed(2)} s > ${LIMIT} s`);
    assert.ok(pct(buffered, 0.95) <= LIMIT, `p95 buffered lag ${pct(buffered, 0.95).toFixed(2)} s > ${LIMIT} s`);
    assert.ok(end.currentTime - start.currentTime >= SECS * 0.8, `the playhead advanced ${(end.currentTime - start.currentTime).toFixed(1)} s in ${SECS} s`);
    assert.equal(end.videoWidth, 640);
    assertNoErrors(errors);
  } finally {
    if (ffmpeg) await ffmpeg.stop();
    await browser.close();
    await server.stop();
  }
});
