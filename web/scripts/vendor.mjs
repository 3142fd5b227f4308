// Copies the pinned npm builds of mpegts.js and hls.js into web/vendor/ (served as they are, no
// npm at run time).
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
mkdirSync(path.join(web, 'vendor'), { recursive: true });
const files = [
  ['mpegts.js', 'dist/mpegts.js', 'mpegts.js'],
  ['mpegts.js', 'dist/mpegts.js.LICENSE.txt', 'mpegts.js.LICENSE.txt'],
  ['mpegts.js', 'LICENSE', 'mpegts.LICENSE'],
  ['hls.js', 'dist/hls.min.js', 'hls.min.js'],
  ['hls.js', 'LICENSE', 'hls.LICENSE'],
];
for (const [pkg, from, to] of files) {
  copyFileSync(path.join(web, 'node_modules', pkg, from), path.join(web, 'vendor', to));
}
console.log('vendored mpegts.js and hls.js into web/vendor/');
