// Detections around the playhead: the API's pages, loaded as the video plays or seeks.
//
// GET /api/jobs/<id>/detections?start=<frame index>&limit=<n> answers the
// analysed frames from ``start`` on (at most ``limit`` of them) and the
// ``next_start`` of the next page. A request for ``start = k * block`` with
// ``limit = block`` therefore covers every analysed frame of the frame indexes
// [start, next_start): there are at most ``block`` analysed frames in a block.
// The store keeps a few such ranges: the one the playhead is in and the next
// one, fetched ahead; ranges far from the playhead are dropped, so an hour of
// video costs what a minute does.

// Media times and the API's timestamps may differ by rounding (microseconds vs
// container ticks): a frame counts as "at or before" a time this close after it.
const EPSILON = 0.002;

/** Index of the last element of sorted ``items`` whose ``key(item) <= value``, or -1. */
export function lastAtOrBefore(items, value, key) {
  let low = 0;
  let high = items.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (key(items[middle]) <= value) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}

export class DetectionStore {
  /**
   * @param fetchPage (start, limit) => Promise<page>, a page as the API answers it
   * @param fps the video's frame rate (to guess the frame index of a media time)
   * @param framesTotal frames of the video
   * @param block frame indexes per page (and the page's limit)
   * @param maxGap seconds an analysed frame's objects stay shown after it (the
   *   spacing of analysed frames, so nothing shows past a job's ``end``)
   */
  constructor({ fetchPage, fps, framesTotal, block, maxGap = Infinity, keepBlocks = 8, onLoad = () => {} }) {
    this.fetchPage = fetchPage;
    this.fps = fps > 0 ? fps : 25;
    this.framesTotal = Math.max(1, framesTotal || 1);
    this.block = Math.max(1, Math.min(1000, Math.round(block || Math.min(1000, Math.max(100, this.fps * 10)))));
    this.keepBlocks = keepBlocks;
    this.onLoad = onLoad;
    this.maxGap = maxGap;
    this.ranges = []; // {start, end, frames: [...]}, sorted by start, not overlapping
    this.pending = new Map(); // start -> Promise
    this.error = null;
    this.requested = []; // the starts asked for, in order (the page shows them for tests)
  }

  /** The frame index a media time is in, by the frame rate (an estimate for variable-rate video). */
  indexAt(time) {
    return Math.min(this.framesTotal - 1, Math.max(0, Math.floor(time * this.fps + 1e-6)));
  }

  rangeOf(index) {
    return this.ranges.find((range) => range.start <= index && index < range.end) || null;
  }

  /** Busy loading a page the playhead needs. */
  busy() {
    return this.pending.size > 0;
  }

  /** Load the page that holds ``index`` (unless it is loaded or on its way). */
  ensure(index) {
    if (index < 0 || index >= this.framesTotal || this.rangeOf(index)) return null;
    let start = Math.floor(index / this.block) * this.block;
    // A range may already cover the block's beginning: ask only for what is missing.
    const before = this.rangeOf(start);
    if (before) start = before.end;
    for (const [pendingStart, promise] of this.pending) {
      if (pendingStart <= index && index < pendingStart + this.block) return promise;
    }
    const promise = this.load(start).finally(() => this.pending.delete(start));
    this.pending.set(start, promise);
    return promise;
  }

  async load(start) {
    this.requested.push(start);
    try {
      const page = await this.fetchPage(start, this.block);
      const end = page.next_start === null || page.next_start === undefined ? this.framesTotal : page.next_start;
      this.add({ start, end: Math.max(end, start + 1), frames: page.frames || [] });
      this.error = null;
    } catch (error) {
      if (error && error.name === "AbortError") return;
      this.error = error;
    }
    this.onLoad();
  }

  add(range) {
    // Merge with the ranges it touches, so that lookups see one contiguous run.
    const touching = this.ranges.filter((r) => r.end >= range.start && r.start <= range.end);
    const rest = this.ranges.filter((r) => !touching.includes(r));
    const frames = new Map();
    for (const r of [...touching, range]) for (const frame of r.frames) frames.set(frame.frame, frame);
    const merged = {
      start: Math.min(range.start, ...touching.map((r) => r.start)),
      end: Math.max(range.end, ...touching.map((r) => r.end)),
      frames: [...frames.values()].sort((a, b) => a.frame - b.frame),
    };
    this.ranges = [...rest, merged].sort((a, b) => a.start - b.start);
  }

  /** Drop loaded frames far from the playhead (keeps memory bounded on long videos). */
  trim(index) {
    const reach = this.keepBlocks * this.block;
    this.ranges = this.ranges
      .map((range) => {
        if (range.end >= index - reach && range.start <= index + reach) return range;
        return null;
      })
      .filter(Boolean);
  }

  /**
   * The analysed frame shown at media time ``time``: the nearest analysed frame at
   * or before it (by timestamp). Answers {frame, loading}: frame is null when there
   * is none (before the first analysed frame) or while its page loads.
   */
  frameAt(time) {
    const index = this.indexAt(time);
    const range = this.rangeOf(index);
    // Look ahead: fetch the next page before the playhead gets there.
    if (range && range.end < this.framesTotal && index + this.block / 2 >= range.end) this.ensure(range.end);
    if (!range) {
      this.ensure(index);
      return { frame: null, loading: true };
    }
    this.trim(index);
    const shown = (frame) => ({ frame: time - frame.timestamp <= this.maxGap + EPSILON ? frame : null, loading: false });
    const at = lastAtOrBefore(range.frames, time + EPSILON, (frame) => frame.timestamp);
    if (at >= 0) return shown(range.frames[at]);
    // No analysed frame in this range up to ``time``: it may be in the range before.
    // (Only when a frame there could still be shown: within maxGap of ``time``.)
    if (range.start > 0 && time - range.start / this.fps <= this.maxGap + 1 / this.fps) {
      const previous = this.rangeOf(range.start - 1);
      if (!previous) {
        this.ensure(range.start - 1);
        return { frame: null, loading: true };
      }
      const earlier = lastAtOrBefore(previous.frames, time + EPSILON, (frame) => frame.timestamp);
      if (earlier >= 0) return shown(previous.frames[earlier]);
    }
    return { frame: null, loading: false };
  }
}
