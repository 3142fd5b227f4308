// The pages beyond the streaming path: the home list (types, paging, refreshing itself), sign in
// and out, the anonymous viewer, and every page on a phone-sized screen (no sideways scrolling).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, signUp, assertNoErrors, screenshot, apiAs, startRoomAs } from './helpers.mjs';

const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true };

describe('home, accounts and phone layout', { timeout: 180000 }, () => {
  let server;
  let browser;
  const errors = [];
  const tag = Date.now().toString(36).slice(-5);
  let pk;

  before(async () => {
    server = await startServer();
    browser = await launch();
    // 25 normal rooms (one more than a page) and one PK room.
    const names = Array.from({ length: 25 }, (_, i) => `n${i}_${tag}`);
    for (let i = 0; i < names.length; i += 5) {
      await Promise.all(names.slice(i, i + 5).map((n, j) => startRoomAs(server.base, n, { roomName: `Normal room ${i + j}`, covertImg: '/img/covers/ocean.svg' })));
    }
    pk = await startRoomAs(server.base, `pk_${tag}`, { nickname: 'Pia PK', type: 2, roomName: 'PK arena', covertImg: '/img/covers/arena.svg' });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  it('lists rooms by type, 24 a page, and refreshes itself', async () => {
    const page = await newPage(browser, 'home', errors);
    await page.goto(`${server.base}/`);
    const cards = page.getByTestId('room-card');
    // The list job rebuilds the lists every second and the page refreshes itself: wait until it
    // shows a full page with a next one (the 25th room may reach the list a rebuild later).
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=room-card]').length === 24
      && !document.querySelector('[data-testid=next-page]').disabled, null, { timeout: 10000 });
    assert.equal(await page.getByTestId('next-page').isEnabled(), true);
    assert.equal(await page.getByTestId('prev-page').isDisabled(), true);
    await page.getByTestId('next-page').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=room-card]').length === 1, null, { timeout: 10000 });
    assert.match(page.url(), /page=2/);
    assert.equal(await page.getByTestId('next-page').isDisabled(), true);

    await page.getByTestId('tab-2').click();
    await page.locator(`[data-testid=room-card][data-room-id="${pk.roomId}"]`).waitFor({ timeout: 10000 });
    assert.equal(await cards.count(), 1);
    assert.equal((await cards.first().getByTestId('card-anchor').textContent()).trim(), 'Pia PK');
    assert.equal((await cards.first().getByTestId('card-viewers').textContent()).trim(), '0 viewers');

    // A room started now shows up without a reload; closed, it goes away.
    const late = await startRoomAs(server.base, `late_${tag}`, { type: 2, roomName: 'Late PK' });
    const lateCard = page.locator(`[data-testid=room-card][data-room-id="${late.roomId}"]`);
    await lateCard.waitFor({ timeout: 8000 });
    await apiAs(server.base, '/living/closeLiving', { roomId: late.roomId }, late.cookie);
    await lateCard.waitFor({ state: 'detached', timeout: 8000 });
    assertNoErrors(errors);
  });

  it('signs out and back in from the top bar', async () => {
    const page = await newPage(browser, 'account', errors);
    await signUp(page, server.base, `acct_${tag}`, 'Acct <b>Holder</b>');
    assert.equal((await page.getByTestId('me-name').textContent()).trim(), 'Acct <b>Holder</b>', 'nickname shown as text');
    await page.getByTestId('sign-out').click();
    await page.getByTestId('sign-in').waitFor();
    await page.getByTestId('sign-in').click();
    const dialog = page.locator('.modal.auth');
    await dialog.locator('input[name=username]').fill(`acct_${tag}`);
    await dialog.locator('input[name=password]').fill('secret-password');
    await dialog.locator('button[type=submit]').click();
    await page.getByTestId('me-name').waitFor();
    assert.ok(await page.getByTestId('start-streaming').isVisible(), 'every account may stream by default');
    assertNoErrors(errors);
  });

  it('an anonymous viewer sees the room and a sign-in prompt instead of the send box', async () => {
    const page = await newPage(browser, 'anon', errors);
    await page.goto(`${server.base}/room.html?id=${pk.roomId}`);
    await page.locator('[data-testid=player][data-state=offline]').waitFor({ timeout: 10000 });
    assert.equal((await page.getByTestId('room-name').textContent()).trim(), 'PK arena');
    assert.equal(await page.getByTestId('chat-input').count(), 0);
    await page.locator('.chat-signin').waitFor();
    // A room that does not exist says so.
    await page.goto(`${server.base}/room.html?id=999999`);
    await page.locator('[data-testid=player][data-state=ended]').waitFor({ timeout: 10000 });
    assertNoErrors(errors);
  });

  it('every page fits a phone screen without sideways scrolling', async () => {
    const page = await newPage(browser, 'phone', errors, PHONE);
    const fits = async (what) => {
      const { sw, iw } = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, iw: window.innerWidth }));
      assert.ok(sw <= iw, `${what}: page is ${sw}px wide on a ${iw}px screen`);
    };
    await page.goto(`${server.base}/`);
    await page.getByTestId('room-card').first().waitFor();
    await fits('home');
    await screenshot(page, 'home-phone');
    await page.goto(`${server.base}/room.html?id=${pk.roomId}`);
    await page.locator('[data-testid=player][data-state=offline]').waitFor({ timeout: 10000 });
    await fits('room');
    await signUp(page, server.base, `phone_${tag}`, 'Pho Ne');
    await page.getByTestId('start-streaming').click();
    await page.getByTestId('go-live').waitFor();
    await fits('start form');
    await page.getByTestId('type-2').check({ force: true });
    await page.getByTestId('go-live').click();
    await page.locator('[data-testid=live-status][data-state=waiting]').waitFor({ timeout: 10000 });
    await page.getByTestId('reveal-key').click();
    await fits('console');
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, 'console-phone');
    assertNoErrors(errors);
  });
});
