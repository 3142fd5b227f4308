// Developer tool: screenshots of the pages against a running server, desktop and phone sizes.
// usage: node scripts/look.mjs http://127.0.0.1:18090 [outdir]
import { launch, newPage, signUp } from '../tests/helpers.mjs';
import { mkdirSync } from 'node:fs';

const base = process.argv[2] || 'http://127.0.0.1:18090';
const out = process.argv[3] || '/tmp/look';
mkdirSync(out, { recursive: true });
const errors = [];
const browser = await launch();
try {
  const page = await newPage(browser, 'desk', errors);
  console.log('codecs', await page.evaluate(() => ({ h264: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"'), aac: MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"') })));
  await page.goto(base + '/');
  await page.waitForTimeout(800);
  await page.screenshot({ path: `${out}/home-anon.png` });
  const user = 'u' + Date.now().toString(36);
  await signUp(page, base, user, 'Nova <b>Stream</b>');
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${out}/home-user.png` });
  await page.getByTestId('start-streaming').click();
  await page.getByTestId('go-live').waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${out}/studio-start.png`, fullPage: true });
  await page.getByTestId('go-live').click();
  await page.getByTestId('live-status').waitFor();
  await page.getByTestId('reveal-key').click();
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${out}/console.png`, fullPage: true });
  const roomUrl = page.url().replace('studio.html', 'room.html');
  const phone = await newPage(browser, 'phone', errors, { viewport: { width: 390, height: 844 }, isMobile: true });
  await phone.goto(base + '/');
  await phone.waitForTimeout(1500);
  await phone.screenshot({ path: `${out}/home-phone.png` });
  await phone.goto(roomUrl);
  await phone.waitForTimeout(1500);
  await phone.screenshot({ path: `${out}/room-phone.png` });
  const v = await newPage(browser, 'viewer', errors);
  await v.goto(roomUrl);
  await v.waitForTimeout(1500);
  await v.screenshot({ path: `${out}/room.png` });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${out}/console-phone.png`, fullPage: true });
} finally {
  await browser.close();
  console.log('errors:', errors);
}
