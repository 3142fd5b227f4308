// The vendored players (served without npm) must be byte-for-byte the pinned npm packages' builds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { WEB_DIR } from './helpers.mjs';

const sha = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');

test('web/vendor/mpegts.js equals node_modules/mpegts.js/dist/mpegts.js at the pinned version', () => {
  const pinned = JSON.parse(readFileSync(path.join(WEB_DIR, 'package.json'), 'utf8')).dependencies['mpegts.js'];
  const installed = JSON.parse(readFileSync(path.join(WEB_DIR, 'node_modules/mpegts.js/package.json'), 'utf8')).version;
  assert.equal(installed, pinned, 'npm ci installed the pinned mpegts.js');
  assert.equal(sha(path.join(WEB_DIR, 'vendor/mpegts.js')), sha(path.join(WEB_DIR, 'node_modules/mpegts.js/dist/mpegts.js')),
    'web/vendor/mpegts.js differs from the npm build: run `npm run vendor` in web/');
});

test('web/vendor/hls.min.js equals node_modules/hls.js/dist/hls.min.js at the pinned version', () => {
  const pinned = JSON.parse(readFileSync(path.join(WEB_DIR, 'package.json'), 'utf8')).dependencies['hls.js'];
  const installed = JSON.parse(readFileSync(path.join(WEB_DIR, 'node_modules/hls.js/package.json'), 'utf8')).version;
  assert.equal(installed, pinned, 'npm ci installed the pinned hls.js');
  assert.match(pinned, /^\d+\.\d+\.\d+$/, 'hls.js is pinned to one exact version');
  assert.equal(sha(path.join(WEB_DIR, 'vendor/hls.min.js')), sha(path.join(WEB_DIR, 'node_modules/hls.js/dist/hls.min.js')),
    'web/vendor/hls.min.js differs from the npm build: run `npm run vendor` in web/');
});
