// Copies the pinned npm build of mpegts.js into web/vendor/ (served as is, no npm at run time).
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
mkdirSync(path.join(web, 'vendor'), { recursive: true });
for (const [from, to] of [['dist/mpegts.js', 'mpegts.js'], ['dist/mpegts.js.LICENSE.txt', 'mpegts.js.LICENSE.txt'], ['LICENSE', 'mpegts.LICENSE']]) {
  copyFileSync(path.join(web, 'node_modules/mpegts.js', from), path.join(web, 'vendor', to));
}
console.log('vendored mpegts.js into web/vendor/');
