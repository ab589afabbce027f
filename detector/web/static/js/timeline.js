// The timeline under the player: objects per second of video, stacked by class.
//
// Each bar is one second of video (or a few, on a long video): the mean number
// of objects per analysed frame in it, one colour per class, with the page's
// class filter and score slider applied. It fills in as pages of detections
// arrive in the background; a click (or the arrow keys) seeks the video there.

import { colourOf } from "./dom.js";

// Scores are counted in bins of 0.05, so the slider applies without the frames
// themselves; a threshold inside a bin counts the whole bin.
const SCORE_BINS = 20;

export class Timeline {
  constructor(canvas, { duration, onSeek }) {
    this.canvas = canvas;
    this.duration = Math.max(duration || 0, 0.001);
    this.onSeek = onSeek;
    this.seconds = Math.max(1, Math.ceil(this.duration));
    this.frames = new Uint32Array(this.seconds); // analysed frames per second
    this.counts = new Map(); // label -> Uint32Array(seconds * SCORE_BINS)
    this.loadedUntil = 0; // seconds of video whose frames have all been added
    this.version = 0; // counts add() calls: the drawing cache's key
    this.cache = null;
    this.view = { visible: () => true, minScore: 0, time: 0 };
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "slider");
    canvas.setAttribute("aria-label", "Timeline: objects per second; click or use the arrow keys to seek");
    canvas.setAttribute("aria-valuemin", "0");
    canvas.setAttribute("aria-valuemax", String(Math.round(this.duration)));
    canvas.addEventListener("click", (event) => {
      const rect = canvas.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
      this.onSeek(fraction * this.duration);
    });
    canvas.addEventListener("keydown", (event) => {
      const step = event.shiftKey ? 10 : 1;
      const moves = { ArrowLeft: -step, ArrowDown: -step, ArrowRight: step, ArrowUp: step, PageDown: -10, PageUp: 10 };
      let time = null;
      if (event.key in moves) time = this.view.time + moves[event.key];
      else if (event.key === "Home") time = 0;
      else if (event.key === "End") time = this.duration;
      if (time === null) return;
      event.preventDefault();
      this.onSeek(Math.min(this.duration, Math.max(0, time)));
    });
  }

  labels() {
    return [...this.counts.keys()];
  }

  /** Count a page's frames. */
  add(frames) {
    for (const frame of frames) {
      const second = Math.min(this.seconds - 1, Math.max(0, Math.floor(frame.timestamp)));
      this.frames[second] += 1;
      for (const object of frame.objects) {
        let counts = this.counts.get(object.label);
        if (!counts) {
          counts = new Uint32Array(this.seconds * SCORE_BINS);
          this.counts.set(object.label, counts);
        }
        const bin = Math.min(SCORE_BINS - 1, Math.floor(object.score * SCORE_BINS));
        counts[second * SCORE_BINS + bin] += 1;
      }
    }
    this.version += 1;
  }

  /** Objects of ``label`` scoring at least minScore in ``second``. */
  count(label, second, minScore) {
    const counts = this.counts.get(label);
    if (!counts) return 0;
    let total = 0;
    for (let bin = Math.min(SCORE_BINS - 1, Math.floor(minScore * SCORE_BINS)); bin < SCORE_BINS; bin += 1) {
      total += counts[second * SCORE_BINS + bin];
    }
    return total;
  }

  draw(view = this.view) {
    this.view = view;
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const labels = this.labels().filter((label) => view.visible(label)).sort();
    // One column per pixel at most: a column averages the seconds it spans.
    const columns = Math.min(this.seconds, Math.max(1, Math.floor(width)));
    // The bars change only with the data, the filter or the width: not with the playhead.
    const key = `${this.version}|${view.minScore}|${labels.join(",")}|${columns}`;
    if (this.cache && this.cache.key === key) {
      this.paint(ctx, width, height, columns, labels, this.cache.stacks, this.cache.highest, view);
      return;
    }
    const perColumn = this.seconds / columns;
    const stacks = [];
    let highest = 0;
    for (let column = 0; column < columns; column += 1) {
      const first = Math.floor(column * perColumn);
      const last = Math.max(first + 1, Math.floor((column + 1) * perColumn));
      let frames = 0;
      const values = labels.map(() => 0);
      for (let second = first; second < last; second += 1) {
        frames += this.frames[second];
        labels.forEach((label, i) => {
          values[i] += this.count(label, second, view.minScore);
        });
      }
      const means = values.map((value) => (frames ? value / frames : 0));
      stacks.push(means);
      highest = Math.max(highest, means.reduce((a, b) => a + b, 0));
    }
    this.cache = { key, stacks, highest };
    this.paint(ctx, width, height, columns, labels, stacks, highest, view);
  }

  paint(ctx, width, height, columns, labels, stacks, highest, view) {
    const canvas = this.canvas;
    const columnWidth = width / columns;
    const plotHeight = height - 4;
    if (highest > 0) {
      stacks.forEach((means, column) => {
        let y = height;
        means.forEach((mean, i) => {
          if (!mean) return;
          const barHeight = (mean / highest) * plotHeight;
          ctx.fillStyle = colourOf(labels[i]);
          ctx.fillRect(column * columnWidth, y - barHeight, Math.max(1, columnWidth - (columnWidth > 3 ? 1 : 0)), barHeight);
          y -= barHeight;
        });
      });
    }
    // Not yet loaded: shaded.
    const loadedX = Math.min(width, (this.loadedUntil / this.duration) * width);
    if (loadedX < width) {
      ctx.fillStyle = "rgba(128, 128, 128, 0.18)";
      ctx.fillRect(loadedX, 0, width - loadedX, height);
    }
    // The playhead, in the canvas's CSS colour.
    const x = Math.min(width - 1, (view.time / this.duration) * width);
    ctx.fillStyle = getComputedStyle(canvas).color || "#fff";
    ctx.fillRect(Math.round(x) - 1, 0, 2, height);
    this.canvas.setAttribute("aria-valuenow", String(Math.round(view.time)));
    this.canvas.setAttribute("aria-valuetext", `${view.time.toFixed(1)} seconds`);
  }
}
