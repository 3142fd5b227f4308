// Danmaku: chat text flying right-to-left over the video. Each item is a text-only <span> moved
// by a transform animation (compositor-only, no layout per frame). Items keep one speed in px/s,
// so an item can never catch up with the one ahead of it in its lane; a lane takes a new item
// once the previous one's tail has cleared the right edge plus a gap. When every lane is busy or
// the concurrent cap is reached, items wait in a short queue; the oldest are dropped past its cap.
// Top and bottom danmaku (design §3.2 styles, Bilibili's modes 5 and 4) are pinned, centred, in
// lanes of their own counted from the top or the bottom edge, for PINNED_MS each.

const GAP_PX = 28;
export const PINNED_MS = 4000;

export class Danmaku {
  constructor(layer, { maxConcurrent = 60, maxQueue = 40, speed = 150, fontPx } = {}) {
    this.layer = layer;
    this.maxConcurrent = maxConcurrent;
    this.maxQueue = maxQueue;
    this.speed = speed; // px per second
    this.fontPx = fontPx;
    this.active = 0;
    this.queue = [];
    this.lanes = [];
    // Pinned lanes: when each top / bottom lane frees (ms, performance.now()).
    this.pinned = { top: [], bottom: [] };
    this.enabled = true;
    this.timer = null;
  }

  setEnabled(on) {
    this.enabled = on;
    if (!on) this.clear();
  }

  clear() {
    this.queue.length = 0;
    for (const el of [...this.layer.children]) el.remove();
    this.active = 0;
    this.lanes = [];
    this.pinned = { top: [], bottom: [] };
  }

  /** Shows `text` (plain text) as a flying comment, or pinned at the top or the bottom. */
  add(text, { self = false, color, mode } = {}) {
    if (!this.enabled || !text) return;
    const safeColor = typeof color === 'string' && /^#[0-9a-fA-F]{6}$/.test(color) ? color : undefined;
    this.queue.push({ text, self, color: safeColor, mode: mode === 'top' || mode === 'bottom' ? mode : 'scroll' });
    while (this.queue.length > this.maxQueue) this.queue.shift();
    this.pump();
  }

  metrics() {
    const h = this.layer.clientHeight || 1;
    const w = this.layer.clientWidth || 1;
    const size = this.fontPx || (w < 500 ? 16 : w < 900 ? 19 : 22);
    const laneH = Math.round(size * 1.4);
    // Use the upper ~3/4 of the picture, like Bilibili's default.
    const lanes = Math.max(1, Math.floor((h * 0.75) / laneH));
    return { w, size, laneH, lanes };
  }

  pump() {
    clearTimeout(this.timer);
    this.timer = null;
    const now = performance.now();
    const m = this.metrics();
    if (this.lanes.length !== m.lanes) {
      this.lanes = Array.from({ length: m.lanes }, (_, i) => this.lanes[i] ?? 0);
    }
    const pinnedLanes = Math.max(1, Math.floor(m.lanes / 2));
    for (const side of ['top', 'bottom']) {
      const p = this.pinned[side];
      if (p.length !== pinnedLanes) this.pinned[side] = Array.from({ length: pinnedLanes }, (_, i) => p[i] ?? 0);
    }
    const blocked = [];
    while (this.queue.length && this.active < this.maxConcurrent) {
      const item = this.queue.shift();
      const lanes = item.mode === 'scroll' ? this.lanes : this.pinned[item.mode];
      const lane = lanes.findIndex((free) => free <= now);
      if (lane < 0) {
        blocked.push(item);
        continue;
      }
      if (item.mode === 'scroll') this.launch(item, lane, m, now);
      else this.pin(item, lane, m, now);
    }
    this.queue = blocked.concat(this.queue);
    if (this.queue.length) {
      const next = Math.min(...this.lanes, ...this.pinned.top, ...this.pinned.bottom);
      this.timer = setTimeout(() => this.pump(), Math.max(30, next - now));
    }
  }

  pin(item, lane, m, now) {
    const el = document.createElement('span');
    el.className = `danmaku-item pinned ${item.mode}${item.self ? ' self' : ''}`;
    el.dataset.testid = 'danmaku-item';
    el.dataset.mode = item.mode;
    el.textContent = item.text;
    el.style.setProperty('--dm-size', `${m.size}px`);
    const offset = `${lane * m.laneH + 6}px`;
    if (item.mode === 'top') el.style.top = offset;
    else {
      el.style.top = 'auto';
      el.style.bottom = offset;
    }
    if (item.color) el.style.color = item.color;
    this.layer.append(el);
    this.pinned[item.mode][lane] = now + PINNED_MS;
    this.active++;
    setTimeout(() => {
      if (el.isConnected) {
        el.remove();
        this.active = Math.max(0, this.active - 1);
      }
      if (this.queue.length) this.pump();
    }, PINNED_MS);
  }

  launch(item, lane, m, now) {
    const el = document.createElement('span');
    el.className = item.self ? 'danmaku-item self' : 'danmaku-item';
    el.dataset.testid = 'danmaku-item';
    el.textContent = item.text;
    el.style.setProperty('--dm-size', `${m.size}px`);
    el.style.top = `${lane * m.laneH + 6}px`;
    if (item.color) el.style.color = item.color;
    this.layer.append(el);
    const width = el.offsetWidth;
    const distance = m.w + width;
    const duration = (distance / this.speed) * 1000;
    // The lane frees once this item's tail is GAP_PX inside the right edge.
    this.lanes[lane] = now + ((width + GAP_PX) / this.speed) * 1000;
    this.active++;
    const anim = el.animate([{ transform: 'translate3d(0,0,0)' }, { transform: `translate3d(${-distance}px,0,0)` }], {
      duration,
      easing: 'linear',
      fill: 'forwards',
    });
    const done = () => {
      if (el.isConnected) {
        el.remove();
        this.active = Math.max(0, this.active - 1);
      }
      if (this.queue.length) this.pump();
    };
    anim.onfinish = done;
    anim.oncancel = done;
  }
}
