// One job (#/jobs/<id>): progress while it runs; then the player (job-player.js,
// with the timeline of job-timeline.js), the analytics panel under it
// (job-analytics.js) and the side panel: exports and the annotated video
// (job-exports.js).

import * as api from "./api.js";
import { formatSeconds, h, replace, setText } from "./dom.js";
import { exportsSection, renderSection } from "./job-exports.js";
import { analyticsPanel } from "./job-analytics.js";
import { buildPlayer } from "./job-player.js";
import { isActive, progressText, statusBadge } from "./jobs.js";

const POLL_MS = 1000;

/** The job's options in words: "5 fps sampled", "0.5 s to 2.5 s", "classes person, car", "tracked". */
function optionFacts(options) {
  const span = options.start || options.end ? `${options.start || 0} s to ${options.end ?? "the end"}${options.end ? " s" : ""}` : null;
  return [
    options.sample_fps ? `${options.sample_fps} fps sampled` : null,
    options.frame_stride && options.frame_stride > 1 ? `1 frame in ${options.frame_stride}` : null,
    span,
    Array.isArray(options.classes) && options.classes.length ? `classes ${options.classes.join(", ")}` : null,
    options.track ? "tracked" : null,
  ];
}

export function jobView(root, jobId, params = new URLSearchParams()) {
  const controller = new AbortController();
  const timers = new Set();
  let job = null;
  let player = null;
  let destroyed = false;
  const sideSections = []; // sections with update(job), told of every poll
  const cleanups = []; // what the parts undo when the page goes

  const later = (fn, ms) => {
    const id = setTimeout(() => {
      timers.delete(id);
      if (!destroyed) fn();
    }, ms);
    timers.add(id);
  };
  // What the parts of the page share: the job, its requests' signal, timers, object URLs.
  const ctx = {
    jobId,
    params,
    signal: controller.signal,
    later,
    objectUrls: new Set(),
    destroyed: () => destroyed,
    onDestroy: (fn) => cleanups.push(fn),
    job: () => job,
    show: (next) => show(next),
    pollSoon: () => later(poll, POLL_MS),
  };

  const title = h("h1", { class: "job-title" }, "Loading job…");
  const badge = h("span", { class: "badge-slot" });
  const meta = h("p", { class: "job-meta" });
  const alert = h("p", { class: "error", role: "alert", hidden: true });
  const progressBar = h("progress", { max: 100, value: 0, "aria-label": "Job progress" });
  const progressLabel = h("span", { class: "progress-text" });
  const cancel = h("button", { type: "button" }, "Cancel job");
  const progressSection = h("section", { class: "card job-progress", hidden: true }, h("h2", {}, "Progress"), progressBar, " ", progressLabel, h("div", { class: "actions" }, cancel));
  const playerSlot = h("div", { class: "player-slot" });
  const side = h("div", { class: "side" });
  root.append(
    h("p", { class: "back" }, h("a", { href: "#/" }, "← All jobs")),
    h("div", { class: "job-head" }, title, badge),
    meta,
    alert,
    progressSection,
    h("div", { class: "job-body" }, playerSlot, side),
  );

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      show(await api.api(api.jobPath(jobId, "/cancel"), { method: "POST" }));
    } catch (failure) {
      fail(failure.message);
    } finally {
      cancel.disabled = false;
    }
  });

  function fail(message) {
    alert.textContent = message;
    alert.hidden = !message;
  }

  function show(next) {
    job = next;
    setText(title, job.filename || job.id);
    document.title = `${job.filename || job.id} · detector`;
    replace(badge, statusBadge(job.status));
    const video = job.video || {};
    const facts = [
      video.duration !== undefined ? formatSeconds(video.duration) : null,
      video.width ? `${video.width}×${video.height}` : null,
      video.fps ? `${Number(video.fps).toFixed(2).replace(/\.00$/, "")} fps` : null,
      video.rotation ? `turned ${video.rotation}°` : null,
      job.model,
      job.objects_total !== null && job.objects_total !== undefined ? `${job.objects_total} objects` : null,
      `threshold ${job.score_threshold}`,
      ...optionFacts(job.options || {}),
    ].filter(Boolean);
    setText(meta, facts.join(" · "));
    if (job.error) fail(`The job failed: ${job.error}`);
    const running = job.status !== "succeeded";
    progressSection.hidden = !running;
    if (running) {
      const percent = Number(job.progress && job.progress.percent) || 0;
      if (job.status === "queued") progressBar.removeAttribute("value");
      else progressBar.value = percent;
      setText(progressLabel, progressText(job));
      cancel.hidden = !["downloading", "queued", "processing"].includes(job.status);
    }
    if (job.status === "succeeded" && !player) {
      player = buildPlayer(playerSlot, job, ctx);
      playerSlot.append(analyticsPanel(job, ctx, player));
      sideSections.push(renderSection(job, ctx));
      side.append(exportsSection(job, ctx), ...sideSections);
    }
    if (player) {
      player.jobChanged(job);
      for (const section of sideSections) section.update(job);
    }
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      show(await api.api(api.jobPath(jobId), { signal: controller.signal }));
      if (!job.error) fail("");
    } catch (failure) {
      polling = false;
      if (destroyed || failure.name === "AbortError") return;
      if (failure.status === 404) {
        fail(`No such job: ${failure.message}`);
        setText(title, "Job not found");
        return;
      }
      fail(`Could not load the job: ${failure.message}`);
      later(poll, 5 * POLL_MS);
      return;
    }
    polling = false;
    if (job && isActive(job)) later(poll, POLL_MS);
  }

  poll();
  return {
    destroy() {
      destroyed = true;
      controller.abort();
      for (const id of timers) clearTimeout(id);
      for (const url of ctx.objectUrls) URL.revokeObjectURL(url);
      for (const fn of cleanups) fn();
    },
  };
}
