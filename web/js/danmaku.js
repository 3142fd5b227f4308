// Danmaku: chat text flying right-to-left over the video. Each item is a text-only <span> moved
// by a transform animation (compositor-only, no layout per frame). Items keep one speed in px/s,
// so an item can never catch up with the one ahead of it in its lane; a lane takes a new item
// once the previous one's tail has cleared the right edge plus a gap. When every lane is busy or
// the concurrent cap is reached, items wait in a short queue; the oldest are dropped past its cap.

const GAP_PX = 28;

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
  }

  /** Shows `text` (plain text) as a flying comment. */
  add(text, { self = false, color } = {}) {
    if (!this.enabled || !text) return;
    this.queue.push({ text, self, color });
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
    while (this.queue.length && this.active < this.maxConcurrent) {
      const lane = this.lanes.findIndex((free) => free <= now);
      if (lane < 0) break;
      this.launch(this.queue.shift(), lane, m, now);
    }
    if (this.queue.length) {
      const next = Math.min(...this.lanes);
      this.timer = setTimeout(() => this.pump(), Math.max(30, next - now));
    }
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
