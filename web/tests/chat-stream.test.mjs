// The room's chat as a stream (design §3.1), in Chromium against the real binary:
//   1. history on join: what was said before a viewer opened the room shows at once, marked as
//      earlier chat, and live messages follow it;
//   2. a viewer whose chat connection is cut mid-chat gets every message sent during the gap,
//      once each (the client recovers from its last offset on reconnect);
//   3. two tabs of one account both keep their chat (each tab has its own device id).
// No video is needed: a live room chats without a stream. Screenshots go to target/screenshots/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, until, assertNoErrors, apiAs, startRoomAs, screenshot, sleep } from './helpers.mjs';

describe('chat stream: history, recovery, several tabs', { timeout: 180000 }, () => {
  let server;
  let browser;
  let room;
  const errors = [];
  const tag = Date.now().toString(36).slice(-6);

  before(async () => {
    server = await startServer();
    browser = await launch();
    room = await startRoomAs(server.base, `csanchor_${tag}`, { nickname: 'Host' });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  /** A signed-in page of `user` ({cookie}) in the room, its chat online. */
  async function open(label, user, context) {
    let page;
    if (context) {
      page = await context.newPage();
      page.on('pageerror', (e) => errors.push(`[${label}] pageerror: ${e.message}`));
    } else {
      page = await newPage(browser, label, errors);
      const [name, value] = user.cookie.split('=');
      await page.context().addCookies([{ name, value, url: server.base }]);
    }
    await page.goto(`${server.base}/room.html?id=${room.roomId}`);
    await page.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });
    return page;
  }

  const lines = (page, text) => page.locator('[data-testid=chat-line] .content', { hasText: text });

  async function say(page, text) {
    // The gateway allows 5 messages a second per user (burst 5): a message refused as
    // `rate_limited` is sent again once a token is back; any other refusal fails the test.
    for (let attempt = 1; attempt <= 10; attempt++) {
      await page.getByTestId('chat-input').fill(text);
      await page.getByTestId('chat-input').press('Enter');
      // Answered by the gateway: the line loses its pending mark (and is marked failed if refused).
      const answered = page.locator(`[data-testid=chat-line]:not(.pending) .content:text-is("${text}")`);
      await until(`the gateway's answer to "${text}"`, async () => (await answered.count()) === attempt, { timeoutMs: 5000 });
      const failed = await page.locator(`[data-testid=chat-line].failed .content:text-is("${text}")`).count();
      if (failed < attempt) return;
      const why = await page.locator('.chat-note').getAttribute('data-error');
      assert.equal(why, 'rate_limited', `"${text}" refused: ${why}`);
      await sleep(250);
    }
    throw new Error(`"${text}" stayed rate limited`);
  }

  async function register(name) {
    const u = await apiAs(server.base, '/user/register', { username: `${name}_${tag}`, password: 'secret-password', nickname: name });
    return { cookie: u.cookie, userId: u.data.userId };
  }

  it('1. shows earlier chat at once, marked, then live messages after it', async () => {
    const talker = await register('Talker');
    const t = await open('talker', talker);
    for (let i = 1; i <= 3; i++) await say(t, `before-${i}`);
    const late = await register('Late');
    const v = await open('late', late);
    await v.getByTestId('chat-earlier').waitFor({ timeout: 5000 });
    for (let i = 1; i <= 3; i++) {
      assert.equal(await lines(v, `before-${i}`).count(), 1, `before-${i} shown once`);
      assert.ok(await v.locator('[data-testid=chat-line].earlier .content', { hasText: `before-${i}` }).count(), 'marked as earlier chat');
    }
    await say(t, 'after-join');
    await lines(v, 'after-join').waitFor({ timeout: 5000 });
    const order = await v.locator('[data-testid=chat-line]:not(.system) .content').allTextContents();
    assert.deepEqual(order.filter((x) => /before-|after-join/.test(x)), ['before-1', 'before-2', 'before-3', 'after-join']);
    await screenshot(v, 'chat-history-on-join');
    await t.context().close();
    await v.context().close();
    assertNoErrors(errors);
  });

  it('2. a viewer cut off mid-chat gets the messages of the gap once each', async () => {
    const sender = await register('Sender');
    const viewer = await register('Cutoff');
    const s = await open('sender', sender);
    const v = await open('cutoff', viewer);
    await say(s, 'gap-0');
    await lines(v, 'gap-0').waitFor({ timeout: 5000 });
    // Keep the viewer from reconnecting while the sender talks: its IM config requests are
    // answered "unavailable" (as the api does when no gateway runs).
    await v.route('**/im/getImConfig', (route) => route.fulfill({ json: { code: 503, msg: 'no IM gateway is running', data: null } }));
    await v.evaluate(() => window.__imClient.ws.close());
    await v.locator('[data-testid=chat-status][data-state=reconnecting]').waitFor({ timeout: 5000 });
    for (let i = 1; i <= 5; i++) await say(s, `gap-${i}`);
    assert.equal(await lines(v, 'gap-3').count(), 0, 'not delivered while cut off');
    await v.unroute('**/im/getImConfig');
    await v.evaluate(() => window.__imClient.reconnectNow());
    await v.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });
    await lines(v, 'gap-5').waitFor({ timeout: 5000 });
    for (let i = 0; i <= 5; i++) assert.equal(await lines(v, `gap-${i}`).count(), 1, `gap-${i} once`);
    const stats = await v.evaluate(() => window.__imClient.stats);
    assert.equal(stats.recovered, 1, JSON.stringify(stats));
    assert.equal(await v.getByTestId('chat-gap').count(), 0, 'a complete recovery shows no gap note');
    await say(s, 'gap-after');
    await lines(v, 'gap-after').waitFor({ timeout: 5000 });
    assert.equal(await lines(v, 'gap-after').count(), 1);
    await screenshot(v, 'chat-recovered');
    await s.context().close();
    await v.context().close();
    assertNoErrors(errors);
  });

  it('3. two tabs of one account both keep chat', async () => {
    const me = await register('TwoTabs');
    const other = await register('Other');
    const tab1 = await open('tab1', me);
    const tab2 = await open('tab2', me, tab1.context());
    const o = await open('other', other);
    await say(o, 'to-both-tabs');
    await lines(tab1, 'to-both-tabs').waitFor({ timeout: 5000 });
    await lines(tab2, 'to-both-tabs').waitFor({ timeout: 5000 });
    await say(tab1, 'from-tab-1');
    await lines(tab2, 'from-tab-1').waitFor({ timeout: 5000 });
    await lines(o, 'from-tab-1').waitFor({ timeout: 5000 });
    assert.equal(await lines(tab1, 'from-tab-1').count(), 1, 'the sending tab shows its message once');
    await say(tab2, 'from-tab-2');
    await lines(tab1, 'from-tab-2').waitFor({ timeout: 5000 });
    for (const t of [tab1, tab2]) {
      assert.equal(await t.getByTestId('chat-status').getAttribute('data-state'), 'online', 'neither tab was replaced');
    }
    await screenshot(tab2, 'chat-second-tab');
    await tab1.context().close();
    await o.context().close();
    assertNoErrors(errors);
  });
});
