// Shared by the browser tests: start the real `livehouse` binary on free ports with a temp data
// dir, launch Debian's Chromium through playwright-core, collect console errors, push a test
// stream with ffmpeg, and drive the sign-up dialog. Every wait has a deadline.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(WEB_DIR, '..');
export const BIN = process.env.LIVEHOUSE_BIN || path.join(ROOT, 'target/debug/livehouse');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SHOTS = path.join(ROOT, 'target/screenshots');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** An error that stops `until` at once (the condition can no longer become true). */
export class Fatal extends Error {}

/** Polls `fn` until it returns a truthy value; throws `what` after `timeoutMs`. */
export async function until(what, fn, { timeoutMs = 10000, everyMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e instanceof Fatal) throw e;
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(everyMs);
  }
}

/** Starts the binary (all roles, embedded backends). Returns {base, rtmpPort, stop, log}. */
export async function startServer() {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it with \`cargo build --bin livehouse\` (scripts/test.sh does)`);
  const [http, rtmp, imTcp] = [await freePort(), await freePort(), await freePort()];
  const dataDir = mkdtempSync(path.join(tmpdir(), 'livehouse-web-'));
  const args = ['--http-addr', `127.0.0.1:${http}`, '--rtmp-addr', `127.0.0.1:${rtmp}`, '--im-tcp-addr', `127.0.0.1:${imTcp}`,
    '--data-dir', dataDir, '--web-dir', WEB_DIR,
    // The suites sign up dozens of accounts from loopback in a minute: the pre-login rate
    // limits stay on, well above that (tests/tests/hostile.rs tests the limits themselves).
    '--rate-signup-per-ip', '1000', '--rate-login-per-ip', '1000', '--rate-im-token-per-ip', '1000'];
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' } });
  let log = '';
  const keep = (d) => {
    log += d.toString();
    if (log.length > 400000) log = log.slice(-200000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, sig) => {
    exited = { code, sig };
  });
  const base = `http://127.0.0.1:${http}`;
  await until('the server to answer /healthz', async () => {
    if (exited) throw new Fatal(`livehouse exited (${JSON.stringify(exited)}):\n${log.slice(-3000)}`);
    const r = await fetch(`${base}/healthz`);
    return r.ok;
  }, { timeoutMs: 20000 });
  return {
    base,
    rtmpPort: rtmp,
    get log() {
      return log;
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        await until('livehouse to exit', () => exited, { timeoutMs: 8000 }).catch(() => child.kill('SIGKILL'));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', '--disable-dev-shm-usage',
  // Background tabs must keep playing and chatting while another page is in front.
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'];

/** Launches Chromium (Playwright gives every launch a fresh temporary profile). */
export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing (apt-get install chromium; .ci/web.sh does)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000 });
}

/**
 * A new page in a new context (its own cookies) that records console errors and page errors
 * into `errors` (each with the page's label).
 */
export async function newPage(browser, label, errors, { viewport = { width: 1366, height: 820 }, isMobile = false } = {}) {
  const context = await browser.newContext({ viewport, isMobile, hasTouch: isMobile, deviceScaleFactor: 1 });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`[${label}] console.error: ${m.text()} (${m.location().url || ''})`);
  });
  page.on('pageerror', (e) => errors.push(`[${label}] pageerror: ${e.message}`));
  page.on('crash', () => errors.push(`[${label}] page crashed`));
  return page;
}

export function assertNoErrors(errors) {
  if (errors.length) throw new Error(`browser errors:\n${errors.join('\n')}`);
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Signs up through the home page's dialog; resolves when the top bar shows the user. */
export async function signUp(page, base, username, nickname = username) {
  await page.goto(`${base}/`);
  await page.getByTestId('sign-up').click();
  const dialog = page.locator('.modal.auth');
  await dialog.locator('input[name=username]').fill(username);
  await dialog.locator('input[name=nickname]').fill(nickname);
  await dialog.locator('input[name=password]').fill('secret-password');
  await dialog.locator('button[type=submit]').click();
  await page.getByTestId('me-name').filter({ hasText: nickname }).waitFor({ state: 'attached' });
}

/** Pushes a test pattern with a tone to `url` with Debian's ffmpeg (1 s GOP). Returns {stop, log}. */
export function pushFfmpeg(url, { size = '640x360', rate = 30 } = {}) {
  const args = ['-hide_banner', '-loglevel', 'warning', '-re',
    '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', String(rate), '-pix_fmt', 'yuv420p', '-b:v', '800k',
    '-c:a', 'aac', '-b:a', '64k', '-ar', '44100', '-f', 'flv', url];
  const child = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => {
    log += d.toString();
    if (log.length > 20000) log = log.slice(-10000);
  });
  let exited = null;
  child.on('exit', (code, sig) => {
    exited = { code, sig };
  });
  return {
    get log() {
      return log;
    },
    get exited() {
      return exited;
    },
    async stop() {
      if (exited) return;
      child.kill('SIGINT');
      await until('ffmpeg to exit', () => exited, { timeoutMs: 5000 }).catch(() => child.kill('SIGKILL'));
    },
  };
}

/** Playback facts of the first <video> matching `sel`. */
export function videoState(page, sel = 'video') {
  return page.$eval(sel, (v) => ({
    currentTime: v.currentTime,
    videoWidth: v.videoWidth,
    paused: v.paused,
    readyState: v.readyState,
    bufferedEnd: v.buffered.length ? v.buffered.end(v.buffered.length - 1) : null,
  }));
}

/** Calls the API as a user (`cookie` from an earlier call); returns {data, cookie}. */
export async function apiAs(base, path, body, cookie) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(cookie ? { cookie } : {}) }, body: JSON.stringify(body) });
  const j = await r.json();
  if (j.code !== 200) throw new Error(`${path}: ${j.code} ${j.msg}`);
  return { data: j.data, cookie: (r.headers.get('set-cookie') || '').split(';')[0] || cookie };
}

/** Registers a user and starts a room for it; returns {roomId, cookie, userId}. */
export async function startRoomAs(base, username, { nickname = username, type = 1, roomName = `${username}'s room`, covertImg = '' } = {}) {
  const u = await apiAs(base, '/user/register', { username, password: 'secret-password', nickname });
  const { data } = await apiAs(base, '/living/startingLiving', { type, roomName, covertImg }, u.cookie);
  return { roomId: data.roomId, cookie: u.cookie, userId: u.data.userId };
}
