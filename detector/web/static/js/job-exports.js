// A job's side panel: a button per export format, and the annotated video
// (start the render, follow it, download it).

import * as api from "./api.js";
import { formatBytes, h, setText } from "./dom.js";

const EXPORTS = [
  { format: "coco", title: "COCO JSON", extension: "json" },
  { format: "mot", title: "MOT (tracks)", extension: "txt", tracked: true },
  { format: "cvat", title: "CVAT XML", extension: "xml" },
  { format: "csv", title: "CSV", extension: "csv" },
  { format: "jsonl", title: "JSON Lines", extension: "jsonl" },
];

function stem(filename) {
  return String(filename || "video").replace(/\.[^.]*$/, "") || "video";
}

/**
 * The exports section: one button per format the job has (MOT only for a tracked job);
 * each fetches the export with the Bearer token and saves it under the API's file name.
 */
export function exportsSection(job, ctx) {
  const links = h("ul", { class: "downloads", "aria-live": "polite" });
  const exportError = h("p", { class: "error", role: "alert", hidden: true });
  const buttons = EXPORTS.filter((spec) => !spec.tracked || (job.options && job.options.track)).map((spec) => {
    const button = h("button", { type: "button", class: "small", dataset: { format: spec.format } }, spec.title);
    button.addEventListener("click", async () => {
      button.disabled = true;
      exportError.hidden = true;
      const text = button.textContent;
      setText(button, "Preparing…");
      try {
        const file = await api.download(api.jobPath(job.id, `/export?format=${spec.format}`), `${stem(job.filename)}.${spec.extension}`);
        ctx.objectUrls.add(file.url);
        const link = h("a", { href: file.url, download: file.filename, class: "download" }, `${file.filename} (${formatBytes(file.size)})`);
        links.prepend(h("li", {}, link));
        link.click();
      } catch (failure) {
        exportError.textContent = `${spec.title}: ${failure.message}`;
        exportError.hidden = false;
      } finally {
        button.disabled = false;
        setText(button, text);
      }
    });
    return button;
  });
  return h("section", { class: "card exports" }, h("h2", {}, "Export detections"), h("div", { class: "button-row" }, buttons), exportError, links);
}

/**
 * The annotated video section: "Make annotated video" (POST /render), its progress
 * while the job is polled, then a download link. ``section.update(job)`` follows the
 * job's ``render`` as polled.
 */
export function renderSection(job, ctx) {
  const state = h("p", { class: "render-state" });
  const bar = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Annotated video progress" });
  const start = h("button", { type: "button", class: "small" }, "Make annotated video");
  const link = h("a", { class: "download", hidden: true, href: "#" }, "Download annotated video");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const section = h("section", { class: "card render" }, h("h2", {}, "Annotated video"), state, bar, h("div", { class: "button-row" }, start, link), error);
  start.addEventListener("click", async () => {
    start.disabled = true;
    error.hidden = true;
    try {
      const render = await api.api(api.jobPath(ctx.jobId, "/render"), { method: "POST" });
      ctx.show({ ...ctx.job(), render });
      ctx.pollSoon();
    } catch (failure) {
      error.textContent = failure.status === 404 || failure.status === 405 ? "This service cannot make annotated videos yet." : failure.message;
      error.hidden = false;
    } finally {
      start.disabled = false;
    }
  });
  // The media URL carries a short-lived token: ask for a fresh one at each click.
  link.addEventListener("click", async (event) => {
    if (link.dataset.fresh === "1") {
      link.dataset.fresh = "";
      return;
    }
    event.preventDefault();
    try {
      const media = await api.api(api.jobPath(ctx.jobId, "/media-token"), { method: "POST" });
      link.href = media.annotated_url;
      link.dataset.fresh = "1";
      link.click();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
  link.download = `${stem(job.filename)}-annotated.mp4`;
  section.update = (current) => {
    const render = current.render;
    bar.hidden = true;
    link.hidden = true;
    start.hidden = false;
    if (!render) {
      setText(state, "Not made yet: a copy of the video with the boxes drawn in.");
      return;
    }
    if (render.status === "queued" || render.status === "rendering") {
      start.hidden = true;
      bar.hidden = false;
      bar.value = Number(render.percent) || 0;
      setText(state, `${render.status} · ${(Number(render.percent) || 0).toFixed(0)} %`);
    } else if (render.status === "succeeded") {
      start.hidden = true;
      link.hidden = false;
      setText(state, "Ready.");
    } else {
      setText(state, `Failed: ${render.error || "no reason given"}`);
      setText(start, "Try again");
    }
  };
  return section;
}
