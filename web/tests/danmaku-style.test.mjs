// Danmaku styles (design §3.2) in Chromium against the real binary: a viewer picks a palette
// colour and a position on the room page; another viewer's overlay shows the comment in that
// colour, pinned at the top (or the bottom) and centred, for 4 s; a scrolling one flies as
// before. Screenshot: target/screenshots/danmaku-styles.png.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, assertNoErrors, apiAs, startRoomAs, screenshot } from './helpers.mjs';

describe('danmaku styles', { timeout: 120000 }, () => {
  let server;
  let browser;
  const errors = [];
  const tag = Date.now().toString(36).slice(-5);

  before(async () => {
    server = await startServer();
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  it('a comment keeps its colour and position, pinned ones for 4 s', async () => {
    const room = await startRoomAs(server.base, `dsa_${tag}`, { nickname: 'Host' });
    const pageOf = async (label, name) => {
      const u = await apiAs(server.base, '/user/register', { username: `${name}_${tag}`, password: 'secret-password', nickname: name });
      const page = await newPage(browser, label, errors);
      const [k, v] = u.cookie.split('=');
      await page.context().addCookies([{ name: k, value: v, url: server.base }]);
      await page.goto(`${server.base}/room.html?id=${room.roomId}`);
      await page.locator('[data-testid=chat-status][data-state=online]').waitFor({ timeout: 15000 });
      return page;
    };
    const sender = await pageOf('sender', 'Styler');
    const watcher = await pageOf('watcher', 'Watcher');
    const say = async (text, color, mode) => {
      await sender.getByTestId('danmaku-color').selectOption(color);
      await sender.getByTestId('danmaku-mode').selectOption(mode);
      await sender.getByTestId('chat-input').fill(text);
      await sender.getByTestId('chat-input').press('Enter');
    };
    const item = (text) => watcher.locator('[data-testid=danmaku-item]', { hasText: text });

    await say(`top ${tag}`, '#fe0302', 'top');
    await item(`top ${tag}`).waitFor({ timeout: 5000 });
    assert.equal(await item(`top ${tag}`).getAttribute('data-mode'), 'top');
    assert.equal(await item(`top ${tag}`).evaluate((el) => getComputedStyle(el).color), 'rgb(254, 3, 2)');
    await say(`bottom ${tag}`, '#89d5ff', 'bottom');
    await item(`bottom ${tag}`).waitFor({ timeout: 5000 });
    const [top, bottom, layer] = await Promise.all([
      item(`top ${tag}`).boundingBox(),
      item(`bottom ${tag}`).boundingBox(),
      watcher.locator('#danmaku').boundingBox(),
    ]);
    assert.ok(top.y < layer.y + layer.height / 2, 'the top one is in the upper half');
    assert.ok(bottom.y > layer.y + layer.height / 2, 'the bottom one is in the lower half');
    const centre = (b) => b.x + b.width / 2;
    assert.ok(Math.abs(centre(top) - centre(layer)) < 4, 'pinned comments are centred');
    await screenshot(watcher, 'danmaku-styles');
    // Pinned for 4 s, then gone.
    await item(`top ${tag}`).waitFor({ state: 'detached', timeout: 6000 });
    // A scrolling comment, and the chat line of every one.
    await say(`scroll ${tag}`, '#ffffff', 'scroll');
    await item(`scroll ${tag}`).waitFor({ timeout: 5000 });
    assert.equal(await item(`scroll ${tag}`).getAttribute('data-mode'), null);
    for (const t of ['top', 'bottom', 'scroll']) {
      assert.equal(await watcher.locator('[data-testid=chat-line] .content', { hasText: `${t} ${tag}` }).count(), 1);
    }
    assertNoErrors(errors);
  });
});
