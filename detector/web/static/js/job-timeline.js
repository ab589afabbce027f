// The job page's timeline: the objects-per-second chart under the video
// (js/timeline.js draws it) and the background pages of detections that fill it.

import * as api from "./api.js";
import { h, setText } from "./dom.js";
import { Timeline } from "./timeline.js";

// The timeline's background pages: the most the API gives at once.
const TIMELINE_LIMIT = 1000;

/**
 * The timeline's box and its chart.
 * @param job the succeeded job
 * @param ctx the job page's context (signal, destroyed())
 * @param onSeek (time) => void, when the timeline is clicked or keyed
 * @returns {node, timeline, load(store, {onFrames, view})}
 */
export function jobTimeline(job, ctx, { onSeek }) {
  const canvas = h("canvas", { class: "timeline", id: "timeline" });
  const state = h("span", { class: "timeline-state" });
  const node = h("div", { class: "timeline-box" }, h("label", { htmlFor: canvas.id, class: "timeline-label" }, "Objects per second, by class ", state), canvas);
  const timeline = new Timeline(canvas, {
    duration: job.video.duration || (job.video.frame_count || 1) / (job.video.fps || 25),
    onSeek,
  });

  /**
   * Fetch every page of detections, one after another, each only while the playhead's
   * store is idle, and count them into the timeline.
   * @param store the player's DetectionStore (busy() while the playhead waits for a page)
   * @param onFrames (frames) => void, for each page (the class filter learns labels)
   * @param view () => the timeline's view: {visible, minScore, time}
   */
  async function load(store, { onFrames, view }) {
    let start = 0;
    const total = store.framesTotal;
    setText(state, "(loading…)");
    while (start !== null && start !== undefined && !ctx.destroyed()) {
      while (store.busy() && !ctx.destroyed()) await new Promise((resolve) => setTimeout(resolve, 100));
      let page;
      try {
        page = await api.api(api.jobPath(job.id, `/detections?start=${start}&limit=${TIMELINE_LIMIT}`), { signal: ctx.signal });
      } catch (failure) {
        if (failure.name !== "AbortError") setText(state, `(stopped: ${failure.message})`);
        return;
      }
      timeline.add(page.frames || []);
      onFrames(page.frames || []);
      start = page.next_start;
      const until = start === null || start === undefined ? total : start;
      timeline.loadedUntil = (until / total) * timeline.duration;
      setText(state, start === null || start === undefined ? "" : `(loading… ${Math.round((100 * until) / total)} %)`);
      timeline.draw(view());
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    canvas.dataset.complete = "1";
  }

  return { node, timeline, load };
}
