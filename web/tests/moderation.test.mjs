// Moderation in the browser, against the real binary, with an anchor and viewers in separate
// browser contexts: the studio's moderation panel changes the room's state and its audit log
// shows each change; a chat message's menu mutes, deletes (the message disappears for other
// viewers) and bans, from the anchor's console and from a room admin's room page; viewers see
// the notices; the gateway refuses a muted viewer's message and, in slow mode, a message sent too
// soon, and the sender is told why and for how long.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, assertNoErrors, screenshot, apiAs, startRoomAs, until, sleep } from './helpers.mjs';

describe('moderation UI', { timeout: 200000 }, () => {
  let server;
  let browser;
  const errors = [];
  const tag = Date.now().toString(36).slice(-5);
  let anchor;
  let viewer;
  let helper;

  const register = async (username, nickname) => {
    const r = await apiAs(server.base, '/user/register', { username, password: 'secret-password', nickname });
    return { cookie: r.cookie, userId: r.data.userId, nickname };
  };
  const pageAs = async (label, who, opts) => {
    const page = await newPage(browser, label, errors, opts);
    const [name, value] = who.cookie.split('=');
    await page.context().addCookies([{ name, value, url: server.base }]);
    page.on('dialog', (d) => {
      errors.push(`[${label}] unexpected dialog: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    return page;
  };
  const getAs = async (path, who) => {
    const r = await fetch(server.base + path, { headers: { cookie: who.cookie } });
    const j = await r.json();
    if (j.code !== 200) throw new Error(`${path}: ${j.code} ${j.msg}`);
    return j.data;
  };
  const state = () => getAs(`/living/moderation/state?roomId=${anchor.roomId}`, anchor);

  before(async () => {
    server = await startServer();
    browser = await launch();
    anchor = await startRoomAs(server.base, `anc_${tag}`, { nickname: 'Ana Anchor' });
    viewer = await register(`vie_${tag}`, 'Vic Viewer');
    helper = await register(`hel_${tag}`, 'Hal Helper');
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  it('the studio panel sets slow mode, blocked words and room admins, and the audit log shows each', async () => {
    const page = await pageAs('anchor', anchor);
    await page.goto(`${server.base}/studio.html?id=${anchor.roomId}`);
    const panel = page.getByTestId('moderation-panel');
    await panel.waitFor();

    await page.getByTestId('slow-mode').selectOption('10');
    await until('slow mode 10 s in the room state', async () => (await state()).slowModeSecs === 10);
    await panel.locator('[data-testid=audit-row][data-action=slow_mode]').waitFor();

    await page.getByTestId('word-input').fill('spam, ＡＤ, buy now');
    await page.getByTestId('word-add').click();
    await until('three word chips', async () => (await page.getByTestId('word').count()) === 3);
    assert.deepEqual((await state()).words.sort(), ['buy now', 'spam', 'ＡＤ'].sort());
    await page.locator('[data-testid=word][data-word=spam] .chip-x').click();
    await until('the unblocked word to go', async () => (await page.getByTestId('word').count()) === 2);
    // The server's limit comes back as the panel's error, and nothing changes.
    await page.getByTestId('word-input').fill('x'.repeat(51));
    await page.getByTestId('word-add').click();
    await panel.locator('.form-error', { hasText: 'at most 50 characters' }).waitFor();
    assert.equal((await state()).words.length, 2);

    await page.getByTestId('admin-input').fill(String(helper.userId));
    await page.getByTestId('admin-add').click();
    await page.getByTestId('admin-list').getByText('Hal Helper').waitFor();
    assert.deepEqual((await state()).admins, [helper.userId]);

    const actions = await panel.locator('[data-testid=audit-row]').evaluateAll((rows) => rows.map((r) => r.dataset.action));
    assert.deepEqual(actions, ['admins', 'words', 'words', 'slow_mode'], 'newest first');
    assert.match(await panel.locator('[data-testid=audit-row]').first().textContent(), /appointed Hal Helper as room admin/);
    await panel.scrollIntoViewIfNeeded();
    await screenshot(page, 'moderation-panel');
    await page.getByTestId('slow-mode').selectOption('0');
    await until('slow mode off', async () => (await state()).slowModeSecs === 0);
    await page.close();
    assertNoErrors(errors);
  });

  it("a message's menu mutes, deletes and bans, from the console and from a room admin's room page", async () => {
    await apiAs(server.base, '/living/moderation/admins', { roomId: anchor.roomId, userId: helper.userId, admin: true }, anchor.cookie);
    const studio = await pageAs('anchor', anchor);
    const vPage = await pageAs('viewer', viewer);
    const hPage = await pageAs('helper', helper);
    await studio.goto(`${server.base}/studio.html?id=${anchor.roomId}`);
    await vPage.goto(`${server.base}/room.html?id=${anchor.roomId}`);
    await hPage.goto(`${server.base}/room.html?id=${anchor.roomId}`);
    for (const p of [studio, vPage, hPage]) await p.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });

    for (const text of [`first ${tag}`, `second ${tag}`]) {
      await vPage.getByTestId('chat-input').fill(text);
      await vPage.getByTestId('chat-input').press('Enter');
    }
    const lineOf = (p, text) => p.locator('[data-testid=chat-line]', { has: p.locator('.content', { hasText: text }) });
    for (const p of [studio, hPage]) await lineOf(p, `second ${tag}`).waitFor({ timeout: 5000 });
    assert.equal(await vPage.getByTestId('msg-menu').count(), 0, 'a plain viewer gets no moderation menu');

    // The anchor mutes the viewer for 10 minutes from the console.
    await lineOf(studio, `first ${tag}`).getByTestId('msg-menu').click();
    await screenshot(studio, 'moderation-message-menu');
    const before = Date.now();
    await studio.getByTestId('mod-mute-10m').click();
    const muted = await until('the viewer to be muted', async () => (await state()).muted.find((m) => m.userId === viewer.userId));
    assert.ok(muted.untilMs >= before + 590000 && muted.untilMs <= Date.now() + 610000, `untilMs ${muted.untilMs}`);
    await vPage.locator('[data-testid=chat-notice][data-kind=user_muted]', { hasText: 'Vic Viewer was muted until' }).waitFor({ timeout: 5000 });
    // The gateway refuses the muted viewer's message and says until when; nobody else sees it.
    await vPage.getByTestId('chat-input').fill(`while muted ${tag}`);
    await vPage.getByTestId('chat-input').press('Enter');
    await vPage.locator('.chat-note[data-error=muted]', { hasText: 'You are muted in this room until' }).waitFor({ timeout: 5000 });
    await vPage.locator('[data-testid=chat-line].failed', { hasText: `while muted ${tag}` }).waitFor({ timeout: 5000 });
    await screenshot(vPage, 'moderation-muted-refused');

    // The room admin deletes a message from the room page: it disappears for everyone else.
    await lineOf(hPage, `second ${tag}`).getByTestId('msg-menu').click();
    await hPage.getByTestId('mod-delete').click();
    for (const p of [hPage, studio]) {
      await lineOf(p, `second ${tag}`).waitFor({ state: 'detached', timeout: 5000 });
      await p.locator('[data-testid=chat-line].recalled', { hasText: 'message deleted' }).waitFor({ timeout: 5000 });
    }
    assert.equal(await lineOf(studio, `first ${tag}`).count(), 1, 'only the deleted message went');

    // ... and bans the viewer.
    await lineOf(hPage, `first ${tag}`).getByTestId('msg-menu').click();
    await hPage.getByTestId('mod-ban').click();
    await until('the viewer to be banned', async () => (await state()).banned.includes(viewer.userId));
    await studio.locator('[data-testid=chat-notice][data-kind=user_banned]').waitFor({ timeout: 5000 });
    // The banned viewer's chat is closed at once, with the reason, and stays closed.
    await vPage.locator('[data-testid=chat-status][data-state=error]').waitFor({ timeout: 5000 });
    await vPage.locator('.chat-note[data-error=banned]').waitFor({ timeout: 5000 });
    assert.ok(await vPage.getByTestId('chat-input').isDisabled(), 'the banned viewer cannot type');
    assert.equal(await lineOf(studio, `while muted ${tag}`).count(), 0, 'the refused message never reached the room');
    await screenshot(vPage, 'moderation-banned');

    // The console's panel and log show it all.
    const panel = studio.getByTestId('moderation-panel');
    await panel.getByTestId('banned-list').getByText('Vic Viewer').waitFor({ timeout: 8000 });
    const actions = await panel.locator('[data-testid=audit-row]').evaluateAll((rows) => rows.map((r) => r.dataset.action));
    assert.deepEqual(actions.slice(0, 3), ['ban', 'delete', 'mute']);
    const log = await getAs(`/living/moderation/log?roomId=${anchor.roomId}`, anchor);
    assert.equal(log.list[0].actorId, helper.userId);
    assert.equal(log.list[0].actorRole, 'admin');
    assert.equal(log.list[0].targetId, viewer.userId);
    await screenshot(studio, 'moderation-console');
    assertNoErrors(errors);
  });

  it('slow mode: viewers see it turn on and off, and a message too soon is refused with the wait', async () => {
    const slow = await register(`slo_${tag}`, 'Sam Slow');
    const sPage = await pageAs('slow viewer', slow);
    await sPage.goto(`${server.base}/room.html?id=${anchor.roomId}`);
    await sPage.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });
    await apiAs(server.base, '/living/moderation/slowMode', { roomId: anchor.roomId, seconds: 30 }, anchor.cookie);
    await sPage.locator('[data-testid=chat-notice][data-kind=slow_mode_on]', { hasText: 'one message every' }).waitFor({ timeout: 5000 });
    // The rules reach the gateway within a second of the notice at most: send (each time after
    // the previous answer) until one is refused.
    const input = sPage.getByTestId('chat-input');
    const lineOf = (text) => sPage.locator('[data-testid=chat-line]', { has: sPage.locator('.content', { hasText: text }) });
    let refused = null;
    for (let i = 0; i < 6 && !refused; i++) {
      const text = `slow ${i} ${tag}`;
      await input.fill(text);
      await input.press('Enter');
      const line = lineOf(text);
      await until(`an answer to "${text}"`, async () => !(await line.evaluate((n) => n.classList.contains('pending'))));
      if (await line.evaluate((n) => n.classList.contains('failed'))) refused = text;
      else await sleep(300);
    }
    assert.ok(refused, 'a second message within 30 s is refused');
    const note = sPage.locator('.chat-note[data-error=slow_mode]');
    await note.waitFor({ timeout: 5000 });
    const wait = Number((await note.textContent()).match(/send again in (\d+) s/)?.[1]);
    assert.ok(wait > 20 && wait <= 30, `the sender is told how long to wait: ${await note.textContent()}`);
    await screenshot(sPage, 'moderation-slow-mode-refused');
    // Nobody else sees the refused message.
    const studio = await pageAs('anchor (slow mode)', anchor);
    await studio.goto(`${server.base}/studio.html?id=${anchor.roomId}`);
    await studio.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });
    await apiAs(server.base, '/living/moderation/slowMode', { roomId: anchor.roomId, seconds: 0 }, anchor.cookie);
    for (const p of [sPage, studio]) {
      await p.locator('[data-testid=chat-notice][data-kind=slow_mode_off]').waitFor({ timeout: 5000 });
    }
    assert.equal(await lineOf(refused).count(), 1, 'the sender keeps the refused line, marked failed');
    assert.equal(
      await studio.locator('[data-testid=chat-line]', { has: studio.locator('.content', { hasText: refused }) }).count(),
      0,
      'the refused message never reached the room',
    );
    assertNoErrors(errors);
  });
});
