// The chat client's protocol, against a scripted gateway (tests/fake-gateway.mjs): the page is
// served by the real binary, only /im/getImConfig is answered by the test so that the client
// connects to the fake. Checks: login frame, heartbeats, ACK of every delivery, duplicates
// dropped by msgId, chat send frame, reconnect after a drop, growing backoff while refused.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, until, assertNoErrors, apiAs } from './helpers.mjs';
import { FakeGateway } from './fake-gateway.mjs';


describe('chat client protocol (scripted gateway)', { timeout: 120000 }, () => {
  let server;
  let browser;
  let gw;
  let page;
  let viewer;
  let roomId;
  const errors = [];
  const tag = Date.now().toString(36).slice(-6);

  before(async () => {
    server = await startServer();
    browser = await launch();
    gw = new FakeGateway();
    const wsAddr = await gw.listen();
    const anchor = await apiAs(server.base, '/user/register', { username: `imanchor_${tag}`, password: 'secret-password', nickname: 'Host' });
    roomId = (await apiAs(server.base, '/living/startingLiving', { type: 1, roomName: 'Protocol room' }, anchor.cookie)).data.roomId;
    viewer = await apiAs(server.base, '/user/register', { username: `imviewer_${tag}`, password: 'secret-password', nickname: 'Pat' });
    page = await newPage(browser, 'viewer', errors);
    const [name, value] = viewer.cookie.split('=');
    await page.context().addCookies([{ name, value, url: server.base }]);
    let n = 0;
    await page.route('**/im/getImConfig', (route) => {
      n++;
      route.fulfill({ json: { code: 200, msg: 'success', data: { token: `tok-${n}`, userId: viewer.data.userId, wsImServerAddress: wsAddr, tcpImServerAddress: '' } } });
    });
    await page.clock.install();
    await page.goto(`${server.base}/room.html?id=${roomId}`);
  });

  after(async () => {
    if (browser) await browser.close();
    if (gw) await gw.close();
    if (server) await server.stop();
  });

  it('logs in with appId, userId, a fresh token and the room', async () => {
    await page.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 10000 });
    const login = gw.of(1001)[0];
    assert.equal(login.magic, 18673);
    assert.equal(login.len, Buffer.byteLength(login.bodyText), 'len is the body byte length');
    const { deviceId, ...rest } = login.body;
    assert.match(deviceId, /^web-[0-9a-f]{18}$/, 'a device id of this tab');
    assert.deepEqual(rest, { appId: 10001, userId: viewer.data.userId, token: 'tok-1', roomId }, 'no recover on the first login');
  });

  it('sends a heartbeat every 30 s', async () => {
    const before_ = gw.of(1004).length;
    await page.clock.runFor(30500);
    await until('a heartbeat', () => gw.of(1004).length === before_ + 1, { timeoutMs: 3000 });
    await page.clock.runFor(30000);
    await until('a second heartbeat', () => gw.of(1004).length === before_ + 2, { timeoutMs: 3000 });
    assert.equal(gw.of(1004).at(-1).body.userId, viewer.data.userId);
  });

  it('ACKs every delivery and shows each msgId once', async () => {
    gw.deliver({ msgId: 'm-1', userId: 999, roomId, content: 'first <b>bold</b>', senderName: 'Zed' });
    await page.locator('[data-testid=chat-line] .content', { hasText: 'first <b>bold</b>' }).waitFor({ timeout: 3000 });
    gw.deliver({ msgId: 'm-1', userId: 999, roomId, content: 'first <b>bold</b>', senderName: 'Zed' }); // redelivery
    gw.deliver({ msgId: 'm-2', userId: 999, roomId, content: 'second', senderName: 'Zed' });
    await page.locator('[data-testid=chat-line] .content', { hasText: 'second' }).waitFor({ timeout: 3000 });
    await until('three ACKs', () => gw.of(1005).length >= 3, { timeoutMs: 3000 });
    assert.deepEqual(gw.of(1005).map((f) => f.body.msgId), ['m-1', 'm-1', 'm-2']);
    assert.equal(gw.of(1005)[0].body.appId, 10001);
    assert.equal(await page.locator('[data-testid=chat-line] .content', { hasText: 'first <b>bold</b>' }).count(), 1, 'the duplicate is dropped');
    assert.equal(await page.locator('.chat-list b').count(), 0, 'text, not HTML');
    // A message for another room is not shown.
    gw.deliver({ msgId: 'm-3', userId: 999, roomId: roomId + 1000, content: 'elsewhere', senderName: 'Zed' });
    await until('its ACK', () => gw.of(1005).length >= 4, { timeoutMs: 3000 });
    assert.equal(await page.locator('[data-testid=chat-line] .content', { hasText: 'elsewhere' }).count(), 0);
  });

  it('sends the ACKs of one flush period together, each still its own 1005 frame', async () => {
    const flushMs = await page.evaluate(async () => (await import('/js/im.js')).ACK_FLUSH_MS);
    // Only the test moves the page clock now.
    await page.clock.pauseAt(await page.evaluate(() => Date.now() + 5));
    const acks0 = gw.of(1005).length;
    const delivered = () => page.evaluate(() => window.__imClient.stats.delivered);
    const d0 = await delivered();
    for (const msgId of ['b-1', 'b-2', 'b-3']) gw.deliver({ msgId, userId: 999, roomId, content: msgId, senderName: 'Zed' });
    await until('the three deliveries', async () => (await delivered()) >= d0 + 3, { timeoutMs: 3000 });
    await page.clock.runFor(flushMs - 20);
    // A marker on the same socket after the clock ran: an ACK sent before it would arrive first
    // (one WebSocket keeps its order), so once the marker is in, silence is proven.
    const hb0 = gw.of(1004).length;
    await page.evaluate(() => {
      const body = JSON.stringify({ appId: 10001, marker: true });
      window.__imClient.ws.send(JSON.stringify({ magic: 18673, code: 1004, len: body.length, body }));
    });
    await until('the marker frame', () => gw.of(1004).length > hb0, { timeoutMs: 3000 });
    assert.equal(gw.of(1005).length, acks0, 'no ACK before the flush period ends');
    await page.clock.runFor(40);
    await until('the three ACKs', () => gw.of(1005).length >= acks0 + 3, { timeoutMs: 3000 });
    assert.deepEqual(gw.of(1005).slice(acks0).map((f) => f.body.msgId), ['b-1', 'b-2', 'b-3']);
    await page.clock.resume();
  });

  it('sends chat as code 1003, bizCode 5555, data {roomId, content}', async () => {
    await page.getByTestId('chat-input').fill('héllo 👋');
    await page.getByTestId('chat-input').press('Enter');
    await until('the chat frame', () => gw.of(1003).length === 1, { timeoutMs: 3000 });
    const f = gw.of(1003)[0];
    assert.equal(f.len, Buffer.byteLength(f.bodyText));
    assert.equal(f.body.bizCode, 5555);
    assert.equal(f.body.appId, 10001);
    assert.equal(f.body.userId, viewer.data.userId);
    const data = JSON.parse(f.body.data);
    assert.equal(data.roomId, roomId);
    assert.equal(data.content, 'héllo 👋');
    assert.equal(await page.getByTestId('chat-input').inputValue(), '', 'the box is cleared');
  });

  it('reconnects after a drop, with a fresh token, and backs off while refused', async () => {
    const conns = gw.conns.length;
    gw.refuseLogins = 3;
    // Freeze the page clock so only the test moves time forward.
    await page.clock.pauseAt(await page.evaluate(() => Date.now() + 5));
    gw.drop();
    await page.locator('[data-testid=chat-status][data-state=reconnecting]').waitFor({ timeout: 3000 });
    // Attempt k waits 250·2^k … 500·2^k ms (jittered); the page clock is driven by the test.
    const reconnects = () => page.evaluate(() => window.__imClient.stats.reconnects);
    const r0 = await until('the first reconnect to be scheduled', async () => {
      const r = await reconnects();
      return r >= 1 ? r : null;
    }, { timeoutMs: 3000 });
    for (let k = 0; k < 4; k++) {
      await until(`reconnect ${k + 1} to be scheduled`, async () => (await reconnects()) >= r0 + k, { timeoutMs: 5000 });
      const lower = 250 * 2 ** k;
      await page.clock.runFor(lower - 60);
      // The attempt's timer is still pending (connect() clears it first thing): read from the
      // page, no real time needs to pass.
      assert.ok(await page.evaluate(() => window.__imClient.timers.reconnect !== undefined), `attempt ${k + 1} waited at least ${lower} ms`);
      assert.equal(gw.conns.length, conns + k, `attempt ${k + 1} waited at least ${lower} ms`);
      await page.clock.runFor(lower + 120);
      await until(`connection attempt ${k + 1}`, () => gw.conns.length >= conns + k + 1, { timeoutMs: 5000 });
    }
    await page.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 5000 });
    await page.clock.resume();
    const logins = gw.of(1001).slice(-4);
    assert.equal(new Set(logins.map((f) => f.body.token)).size, 4, 'each attempt asks for a fresh token');
    const first = gw.of(1001)[0].body;
    for (const l of logins) {
      assert.equal(l.body.deviceId, first.deviceId, 'the same tab keeps its device id');
      assert.deepEqual(l.body.recover, { epoch: 'fake-1', offset: gw.top }, 'recovers from the last offset it has');
    }
    const stats = await page.evaluate(() => window.__imClient.stats);
    assert.ok(stats.reconnects >= 4, JSON.stringify(stats));
    // Delivery still works on the new connection.
    gw.deliver({ msgId: 'm-9', userId: 999, roomId, content: 'after reconnect', senderName: 'Zed' });
    await page.locator('[data-testid=chat-line] .content', { hasText: 'after reconnect' }).waitFor({ timeout: 3000 });
    assertNoErrors(errors);
  });

  it('drops a redelivered offset even under another msgId, and marks a gap it could not recover', async () => {
    const top = gw.top;
    gw.deliver({ msgId: 'o-1', userId: 999, roomId, content: 'offset once', senderName: 'Zed' });
    await page.locator('[data-testid=chat-line] .content', { hasText: 'offset once' }).waitFor({ timeout: 3000 });
    gw.deliver({ msgId: 'o-1-again', userId: 999, roomId, content: 'offset once', senderName: 'Zed', offset: top + 1 });
    gw.deliver({ msgId: 'o-2', userId: 999, roomId, content: 'offset next', senderName: 'Zed' });
    await page.locator('[data-testid=chat-line] .content', { hasText: 'offset next' }).waitFor({ timeout: 3000 });
    assert.equal(await page.locator('[data-testid=chat-line] .content', { hasText: 'offset once' }).count(), 1);
    // The gateway cannot recover the gap: the client reloads history and says so.
    let asked = null;
    await page.route('**/im/history*', (route) => {
      asked = new URL(route.request().url()).searchParams;
      route.fulfill({ json: { code: 200, msg: 'success', data: { epoch: 'fake-1', offset: gw.top, list: [
        { msgId: 'h-missed', offset: gw.top, userId: 999, senderName: 'Zed', content: 'missed during the gap', sentAtMs: 1 },
      ] } } });
    });
    gw.recoverAnswer = false;
    gw.top += 1;
    gw.drop();
    await page.clock.runFor(16000);
    await page.getByTestId('chat-gap').waitFor({ timeout: 5000 });
    await page.locator('[data-testid=chat-line] .content', { hasText: 'missed during the gap' }).waitFor({ timeout: 3000 });
    assert.equal(asked.get('roomId'), String(roomId));
    assert.equal(asked.get('before'), String(gw.top + 1), 'history up to the position the login gave');
    gw.recoverAnswer = true;
    await page.unroute('**/im/history*');
  });

  it('does not fight another tab that took the room over; "Use chat here" takes it back', async () => {
    const conns = gw.conns.length;
    gw.replace();
    await page.locator('[data-testid=chat-status][data-state=replaced]').waitFor({ timeout: 3000 });
    await page.clock.runFor(20000);
    // No reconnect started or pending (a connect() sets the status and a socket at once).
    const client = await page.evaluate(() => ({ state: window.__imClient.state, ws: Boolean(window.__imClient.ws), timers: Object.keys(window.__imClient.timers) }));
    assert.deepEqual(client, { state: 'replaced', ws: false, timers: [] }, 'no automatic reconnect');
    assert.equal(gw.conns.length, conns, 'no automatic reconnect');
    await page.getByRole('button', { name: 'Use chat here' }).click();
    await page.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 5000 });
    assert.equal(gw.conns.length, conns + 1);
    assertNoErrors(errors);
  });
});
