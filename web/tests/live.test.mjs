// The three browser scenarios of the web UI, in order, against the real binary:
//   1. a new user signs up, starts a room, ffmpeg pushes to the URL the console shows, the
//      console turns live, and a viewer's video plays (currentTime advances, videoWidth > 0);
//   2. two viewers chat: each message appears for the other within 1 s, as danmaku and in the
//      panel; `<img src=x onerror=alert(1)>` shows as literal text;
//   3. the streamer ends the stream: viewers see the ended state, the room leaves the list.
// Screenshots of the home page, the console and the room go to target/screenshots/.
// Any console error, page error or dialog in any page fails the run.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Fatal, startServer, launch, newPage, signUp, pushFfmpeg, videoState, until, assertNoErrors, screenshot } from './helpers.mjs';

const XSS = '<img src=x onerror=alert(1)>';

describe('livehouse web UI', { timeout: 240000 }, () => {
  let server;
  let browser;
  let ffmpeg;
  const errors = [];
  const s = {}; // shared across the ordered scenarios
  const tag = Date.now().toString(36).slice(-6);

  before(async () => {
    server = await startServer();
    browser = await launch();
  });

  after(async () => {
    if (ffmpeg) await ffmpeg.stop();
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  const failOnDialog = (page, label) =>
    page.on('dialog', (d) => {
      errors.push(`[${label}] unexpected dialog: ${d.type()} ${d.message()}`);
      d.dismiss().catch(() => {});
    });

  it('1. a new user starts a room, ffmpeg pushes to the console URL, it turns live and a viewer plays it', { timeout: 120000 }, async () => {
    const base = server.base;
    const streamer = await newPage(browser, 'streamer', errors);
    failOnDialog(streamer, 'streamer');
    s.streamer = streamer;
    await signUp(streamer, base, `anchor_${tag}`, 'Ana Anchor');

    // Start a room from the home page's button.
    await streamer.getByTestId('start-streaming').click();
    await streamer.waitForURL(/studio\.html/);
    await streamer.getByTestId('room-name').fill(`Evening session ${tag}`);
    await streamer.getByTestId('go-live').click();
    const status = streamer.getByTestId('live-status');
    await status.and(streamer.locator('[data-state=waiting]')).waitFor({ timeout: 10000 });
    s.roomId = Number(new URL(streamer.url()).searchParams.get('id'));
    assert.ok(s.roomId > 0, `the console URL carries the room id (${streamer.url()})`);

    // The key is hidden until revealed.
    const pushUrlEl = streamer.getByTestId('push-url');
    assert.doesNotMatch(await pushUrlEl.textContent(), /[0-9a-f]{16}/, 'push URL is masked before reveal');
    await streamer.getByTestId('reveal-key').click();
    const pushUrl = (await pushUrlEl.textContent()).trim();
    assert.match(pushUrl, /^rtmp:\/\/[^/]+\/live\/\S+$/, `push URL shown: ${pushUrl}`);
    assert.ok((await streamer.getByTestId('ffmpeg-cmd').textContent()).includes(pushUrl), 'the ffmpeg command uses the push URL');

    ffmpeg = pushFfmpeg(pushUrl);
    await until('the console to turn live', async () => {
      if (ffmpeg.exited) throw new Fatal(`ffmpeg exited ${JSON.stringify(ffmpeg.exited)}: ${ffmpeg.log}`);
      return (await status.getAttribute('data-state')) === 'live';
    }, { timeoutMs: 25000, everyMs: 200 });

    // A viewer finds the room on the home page and opens it.
    const v1 = await newPage(browser, 'viewer1', errors);
    failOnDialog(v1, 'viewer1');
    s.v1 = v1;
    await signUp(v1, base, `viewer1_${tag}`, 'Vic One');
    const card = v1.locator(`[data-testid=room-card][data-room-id="${s.roomId}"]`);
    await card.locator('[data-testid=live-badge]').waitFor({ timeout: 15000 });
    assert.equal((await card.getByTestId('card-anchor').textContent()).trim(), 'Ana Anchor');
    await screenshot(v1, 'home');
    await card.click();
    await v1.waitForURL(/room\.html\?id=/);
    await v1.locator('[data-testid=player][data-state=playing]').waitFor({ timeout: 30000 });
    const a = await videoState(v1);
    const b = await until('currentTime to advance by 1.5 s', async () => {
      const x = await videoState(v1);
      return x.currentTime > a.currentTime + 1.5 ? x : null;
    }, { timeoutMs: 15000, everyMs: 250 });
    assert.ok(b.videoWidth > 0, `videoWidth ${b.videoWidth}`);
    assert.equal(b.videoWidth, 640);
    await screenshot(v1, 'room');
    await streamer.locator('[data-testid=preview-video]').evaluate((v) => v.scrollIntoView());
    await streamer.evaluate(() => window.scrollTo(0, 0));
    await screenshot(streamer, 'console');
    assertNoErrors(errors);
  });

  it('2. two viewers chat: each message reaches the other within 1 s, as danmaku and in the panel, as text', { timeout: 60000 }, async () => {
    assert.ok(s.v1, 'scenario 1 must have passed');
    const v1 = s.v1;
    const v2 = await newPage(browser, 'viewer2', errors, { viewport: { width: 390, height: 844 }, isMobile: true });
    failOnDialog(v2, 'viewer2');
    s.v2 = v2;
    await signUp(v2, server.base, `viewer2_${tag}`, 'Val Two');
    await v2.goto(`${server.base}/room.html?id=${s.roomId}`);
    for (const p of [v1, v2, s.streamer]) {
      await p.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });
    }

    // Resolves (in the receiving page) with the time both the panel line and the danmaku showed
    // `text`, as literal text.
    const arrival = (page, text) => page.evaluate((want) => new Promise((resolve) => {
      const found = () => {
        const line = [...document.querySelectorAll('[data-testid=chat-line] .content')].some((e) => e.textContent === want);
        const dm = [...document.querySelectorAll('[data-testid=danmaku-item]')].some((e) => e.textContent === want);
        return line && dm;
      };
      if (found()) return resolve(Date.now());
      const mo = new MutationObserver(() => {
        if (found()) {
          mo.disconnect();
          resolve(Date.now());
        }
      });
      mo.observe(document.body, { childList: true, subtree: true, characterData: true });
      setTimeout(() => {
        mo.disconnect();
        resolve(null);
      }, 5000);
    }), text);

    const say = async (from, to, text) => {
      const waiting = arrival(to, text);
      await from.getByTestId('chat-input').fill(text);
      await to.waitForTimeout(50); // let the observer install before sending
      const sentAt = Date.now();
      await from.getByTestId('chat-input').press('Enter');
      const got = await waiting;
      assert.ok(got, `"${text}" did not reach the other viewer (panel + danmaku) within 5 s`);
      const ms = got - sentAt;
      assert.ok(ms <= 1000, `"${text}" took ${ms} ms`);
      // The sender sees its own line at once too.
      await from.locator('[data-testid=chat-line] .content', { hasText: text }).first().waitFor({ timeout: 1000 });
      return ms;
    };

    const t1 = await say(v1, v2, `hello from one ${tag}`);
    const t2 = await say(v2, v1, `hi back from two ${tag}`);
    const t3 = await say(v1, v2, XSS);
    console.log(`chat latency: ${t1} ms, ${t2} ms, ${t3} ms`);

    // The streamer's console got them too.
    await s.streamer.locator('[data-testid=chat-line] .content', { hasText: `hi back from two ${tag}` }).waitFor({ timeout: 2000 });
    for (const p of [v1, v2, s.streamer]) {
      await p.locator('[data-testid=chat-line] .content').filter({ hasText: XSS }).first().waitFor({ timeout: 2000 });
      const imgs = await p.locator('.chat-list img, .danmaku-layer img').count();
      assert.equal(imgs, 0, 'no <img> was created from chat text');
    }
    // The phone-sized viewer plays too.
    await v2.locator('[data-testid=player][data-state=playing]').waitFor({ timeout: 15000 }).catch(async (e) => {
      throw new Error(`${e.message}\nplayer log: ${JSON.stringify(await v2.evaluate(() => window.__playerLog))}`);
    });
    // Screenshot of the phone-sized room with chat and danmaku.
    await screenshot(v2, 'room-phone');
    await screenshot(v1, 'room-chat');
    assertNoErrors(errors);
  });

  it('3. the streamer ends the stream: viewers see the ended state and the room leaves the list', { timeout: 60000 }, async () => {
    assert.ok(s.v1 && s.v2, 'scenarios 1 and 2 must have passed');
    const home = await newPage(browser, 'home', errors);
    failOnDialog(home, 'home');
    await home.goto(`${server.base}/`);
    const card = home.locator(`[data-testid=room-card][data-room-id="${s.roomId}"]`);
    await card.waitFor({ timeout: 10000 });

    await s.streamer.getByTestId('end-stream').click();
    await s.streamer.getByTestId('confirm-ok').click();
    await s.streamer.getByTestId('ended-card').waitFor({ timeout: 10000 });
    for (const v of [s.v1, s.v2]) {
      await v.locator('[data-testid=player][data-state=ended]').waitFor({ timeout: 10000 });
      assert.match(await v.getByTestId('overlay-title').textContent(), /ended/i);
      assert.ok(await v.getByTestId('chat-input').isDisabled(), 'the send box is disabled once ended');
    }
    await card.waitFor({ state: 'detached', timeout: 10000 });
    await screenshot(s.v1, 'room-ended');
    await screenshot(s.streamer, 'console-ended');
    await ffmpeg.stop();
    assertNoErrors(errors);
  });
});
