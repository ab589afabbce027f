// The job list and the upload form (#/).

import * as api from "./api.js";
import { formatBytes, formatDate, formatSeconds, h, replace, setText } from "./dom.js";

export const ACTIVE = new Set(["downloading", "queued", "processing"]);
const RENDERING = new Set(["queued", "rendering"]);
const POLL_MS = 1000;
const PER_PAGE = 20;

/** True while the job or its annotated video is still being made: the page polls then. */
export function isActive(job) {
  return ACTIVE.has(job.status) || Boolean(job.render && RENDERING.has(job.render.status));
}

export function jobHref(job) {
  return `#/jobs/${encodeURIComponent(job.id)}`;
}

/** "processing · 42 %" and the like, for a job's progress. */
export function progressText(job) {
  const progress = job.progress || {};
  const percent = Number(progress.percent) || 0;
  if (job.status === "succeeded") return "100 %";
  if (job.status === "downloading" && job.bytes_total) {
    return `${formatBytes(job.bytes_downloaded || 0)} of ${formatBytes(job.bytes_total)}`;
  }
  // The stage (planning, detecting, merging, tracking) where it says more than the status.
  const stage = progress.stage && progress.stage !== job.status && progress.stage !== "finished" ? `${progress.stage} · ` : "";
  if (progress.stage === "tracking" && progress.frames_tracked !== null && progress.frames_tracked !== undefined && progress.frames_total) {
    return `tracking · ${progress.frames_tracked} of ${progress.frames_total} frames`;
  }
  const frames = progress.frames_total ? ` (${progress.frames_done} of ${progress.frames_total} frames)` : "";
  return `${stage}${percent.toFixed(0)} %${frames}`;
}

export function statusBadge(status) {
  return h("span", { class: ["status", `status-${String(status).replace(/[^a-z]/g, "")}`] }, status);
}

// --- Upload ---------------------------------------------------------------------------

let labelsPromise = null;

/** The model's labels (GET /api/labels), once per page load; [] when the API has none. */
export function modelLabels() {
  if (!labelsPromise) {
    labelsPromise = api
      .api("/api/labels")
      .then((answer) => (Array.isArray(answer.labels) ? answer.labels : []))
      .catch(() => {
        labelsPromise = null;
        return [];
      });
  }
  return labelsPromise;
}

function numberField(name, label, hint, attrs) {
  const input = h("input", { id: `upload-${name}`, name, type: "number", inputmode: "decimal", ...attrs });
  return {
    input,
    node: h(
      "div",
      { class: "field" },
      h("label", { htmlFor: input.id }, label),
      input,
      h("span", { class: "hint", id: `${input.id}-hint` }, hint),
    ),
  };
}

function uploadForm({ onUploaded }) {
  const file = h("input", { id: "upload-video", name: "video", type: "file", accept: "video/*,.mkv,.mov,.avi,.ts", class: "file-input" });
  const chosen = h("span", { class: "chosen" }, "No video chosen");
  const drop = h(
    "label",
    { htmlFor: file.id, class: "dropzone" },
    h("span", { class: "dropzone-title" }, "Choose a video or drop it here"),
    chosen,
  );
  let dropped = null;
  const selected = () => dropped || (file.files && file.files[0]) || null;
  const showChosen = () => {
    const video = selected();
    setText(chosen, video ? `${video.name} (${formatBytes(video.size)})` : "No video chosen");
    drop.classList.toggle("has-file", Boolean(video));
  };
  file.addEventListener("change", () => {
    dropped = null;
    showChosen();
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      dropped = files[0];
      showChosen();
    }
  });

  const threshold = numberField("score_threshold", "Score threshold", "up to 1; empty: the default", {
    min: 0.05, max: 1, step: 0.01, placeholder: "default",
  });
  const sampleFps = numberField("sample_fps", "Sample rate (fps)", "frames a second to analyse; empty: all", { min: 0, step: "any", placeholder: "all" });
  const stride = numberField("frame_stride", "Frame stride", "every n-th frame; not with a sample rate", { min: 1, step: 1, placeholder: "1", inputmode: "numeric" });
  const start = numberField("start", "Start (seconds)", "empty: from the beginning", { min: 0, step: "any", placeholder: "0" });
  const end = numberField("end", "End (seconds)", "empty: to the end", { min: 0, step: "any", placeholder: "end" });

  const classes = h("input", {
    id: "upload-classes", name: "classes", type: "text", list: "upload-labels", autocomplete: "off",
    placeholder: "all classes", spellcheck: "false",
  });
  const datalist = h("datalist", { id: "upload-labels" });
  const checks = h("div", { class: "label-grid" });
  const chooser = h("details", { class: "label-chooser" }, h("summary", {}, "Pick classes from the model's labels"), checks);
  chooser.hidden = true;
  const typedLabels = () => classes.value.split(",").map((s) => s.trim()).filter(Boolean);
  const syncChecks = () => {
    const typed = new Set(typedLabels());
    for (const box of checks.querySelectorAll("input")) box.checked = typed.has(box.value);
  };
  classes.addEventListener("input", syncChecks);
  modelLabels().then((labels) => {
    if (!labels.length) return;
    labels.forEach(({ label }, index) => {
      datalist.append(h("option", { value: label }));
      const box = h("input", { type: "checkbox", value: label, id: `upload-label-${index}` });
      box.addEventListener("change", () => {
        const typed = typedLabels().filter((l) => l !== label);
        if (box.checked) typed.push(label);
        classes.value = typed.join(", ");
      });
      checks.append(h("label", { class: "check", htmlFor: box.id }, box, label));
    });
    chooser.hidden = false;
    syncChecks();
  });
  const track = h("input", { id: "upload-track", name: "track", type: "checkbox" });

  const progress = h("progress", { class: "upload-progress", max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
  const progressLabel = h("span", { class: "upload-progress-text", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Upload and detect");
  const cancel = h("button", { type: "button", hidden: true }, "Cancel upload");
  let controller = null;
  cancel.addEventListener("click", () => controller && controller.abort());

  const form = h(
    "form",
    { class: "card upload", id: "upload-form" },
    h("h2", {}, "New job"),
    // The input first: it is visually hidden, and its focus ring shows on the drop zone.
    file,
    drop,
    h(
      "fieldset",
      { class: "options" },
      h("legend", {}, "Options"),
      h("div", { class: "option-grid" }, threshold.node, sampleFps.node, stride.node, start.node, end.node),
      h(
        "div",
        { class: "field" },
        h("label", { htmlFor: classes.id }, "Classes"),
        classes,
        datalist,
        h("span", { class: "hint" }, "Comma-separated labels (or class ids); empty: every class"),
      ),
      chooser,
      h("div", { class: "field check-field" }, track, h("label", { htmlFor: track.id }, "Track objects across frames (gives track ids and the MOT export)")),
    ),
    error,
    h("div", { class: "actions" }, submit, cancel, h("div", { class: "upload-status" }, progress, progressLabel)),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const video = selected();
    if (!video) {
      error.textContent = "Choose a video first.";
      error.hidden = false;
      file.focus();
      return;
    }
    const body = new FormData();
    body.append("video", video, video.name);
    // Only what was filled in: the service's defaults for the rest.
    for (const { input } of [threshold, sampleFps, stride, start, end]) {
      if (input.value.trim() !== "") body.append(input.name, input.value.trim());
    }
    if (classes.value.trim()) body.append("classes", typedLabels().join(","));
    if (track.checked) body.append("track", "true");

    controller = new AbortController();
    submit.disabled = true;
    cancel.hidden = false;
    progress.hidden = false;
    progress.value = 0;
    setText(progressLabel, "Uploading…");
    try {
      const job = await api.upload(body, {
        signal: controller.signal,
        onProgress(loaded, total) {
          if (total) {
            progress.value = Math.round((100 * loaded) / total);
            setText(progressLabel, `Uploading ${formatBytes(loaded)} of ${formatBytes(total)} (${progress.value} %)`);
          } else {
            progress.removeAttribute("value");
            setText(progressLabel, `Uploading ${formatBytes(loaded)}`);
          }
        },
      });
      setText(progressLabel, `Uploaded: job ${job.status}`);
      progress.value = 100;
      file.value = "";
      dropped = null;
      showChosen();
      onUploaded(job);
    } catch (failure) {
      progress.hidden = true;
      setText(progressLabel, "");
      if (failure.name !== "AbortError") {
        error.textContent = failure.message;
        error.hidden = false;
      } else {
        setText(progressLabel, "Upload cancelled");
      }
    } finally {
      submit.disabled = false;
      cancel.hidden = true;
      controller = null;
    }
  });
  return form;
}

// --- The list -------------------------------------------------------------------------

function jobRow(job, actions) {
  const link = h("a", { href: jobHref(job), class: "filename" });
  const status = h("td", { class: "col-status", "data-label": "Status" });
  const bar = h("progress", { max: 100, value: 0, "aria-label": "Progress" });
  const barText = h("span", { class: "progress-text" });
  const duration = h("td", { class: "col-duration", "data-label": "Duration" });
  const objects = h("td", { class: "col-objects", "data-label": "Objects" });
  const created = h("td", { class: "col-created", "data-label": "Created" });
  const cancel = h("button", { type: "button", class: "small" }, "Cancel");
  const remove = h("button", { type: "button", class: "small danger" }, "Delete");
  const rowError = h("span", { class: "error small-error", role: "alert" });
  const row = h(
    "tr",
    { dataset: { jobId: job.id } },
    h("td", { class: "col-file", "data-label": "File" }, link),
    status,
    h("td", { class: "col-progress", "data-label": "Progress" }, bar, barText),
    duration,
    objects,
    created,
    h("td", { class: "col-actions", "data-label": "Actions" }, cancel, remove, rowError),
  );
  let current = job;
  let confirmTimer = null;
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    setText(rowError, "");
    try {
      update(await api.api(`/api/jobs/${encodeURIComponent(current.id)}/cancel`, { method: "POST" }));
      actions.changed();
    } catch (failure) {
      setText(rowError, failure.message);
    } finally {
      cancel.disabled = false;
    }
  });
  // Delete asks once more on the button itself (no pop-up dialog).
  remove.addEventListener("click", async () => {
    if (!remove.classList.contains("confirming")) {
      remove.classList.add("confirming");
      setText(remove, "Really delete?");
      confirmTimer = setTimeout(() => {
        remove.classList.remove("confirming");
        setText(remove, "Delete");
      }, 5000);
      return;
    }
    clearTimeout(confirmTimer);
    remove.disabled = true;
    try {
      await api.api(`/api/jobs/${encodeURIComponent(current.id)}`, { method: "DELETE" });
      actions.deleted(current.id);
    } catch (failure) {
      setText(rowError, failure.message);
      remove.disabled = false;
      remove.classList.remove("confirming");
      setText(remove, "Delete");
    }
  });

  function update(next) {
    current = next;
    setText(link, next.filename || next.id);
    link.title = next.filename || next.id;
    replace(status, statusBadge(next.status));
    if (next.error) status.append(h("span", { class: "job-error" }, next.error));
    const percent = next.status === "succeeded" ? 100 : Number(next.progress && next.progress.percent) || 0;
    if (next.status === "queued" || (next.status === "downloading" && !next.bytes_total)) bar.removeAttribute("value");
    else bar.value = percent;
    bar.setAttribute("aria-valuetext", progressText(next));
    setText(barText, progressText(next));
    setText(duration, formatSeconds(next.video && next.video.duration));
    setText(objects, next.objects_total === null || next.objects_total === undefined ? "—" : next.objects_total);
    setText(created, formatDate(next.created_at));
    cancel.hidden = !ACTIVE.has(next.status);
    row.dataset.status = next.status;
  }
  update(job);
  return { row, update };
}

export function jobsView(root) {
  let page = 1;
  let stopped = false;
  let timer = null;
  const rows = new Map();
  const state = h("div", { class: "list-state", "aria-live": "polite" }, "Loading jobs…");
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "jobs", hidden: true },
    h("caption", { class: "visually-hidden" }, "Your jobs, newest first"),
    h(
      "thead",
      {},
      h("tr", {}, ["File", "Status", "Progress", "Duration", "Objects", "Created", ""].map((title) => h("th", { scope: "col" }, title))),
    ),
    tbody,
  );
  const older = h("button", { type: "button", class: "small" }, "Older");
  const newer = h("button", { type: "button", class: "small" }, "Newer");
  const pageText = h("span", { class: "page-text" });
  const pager = h("nav", { class: "pager", "aria-label": "Job pages", hidden: true }, newer, pageText, older);
  newer.addEventListener("click", () => {
    page = Math.max(1, page - 1);
    refresh();
  });
  older.addEventListener("click", () => {
    page += 1;
    refresh();
  });

  const actions = {
    changed: () => refresh(),
    deleted: (id) => {
      const entry = rows.get(id);
      if (entry) entry.row.remove();
      rows.delete(id);
      refresh();
    },
  };

  async function refresh() {
    clearTimeout(timer);
    if (stopped) return;
    let answer;
    try {
      answer = await api.api(`/api/jobs?page=${page}&per_page=${PER_PAGE}`);
    } catch (failure) {
      if (stopped) return;
      if (failure.status === 401) return; // signed out: the router shows the sign-in form
      replace(state, h("span", { class: "error" }, `Could not load your jobs: ${failure.message}`), " ", retryButton());
      state.hidden = false;
      timer = setTimeout(refresh, 5000);
      return;
    }
    if (stopped) return;
    const jobs = answer.jobs || [];
    if (!jobs.length && page > 1) {
      page -= 1;
      return refresh();
    }
    const seen = new Set();
    jobs.forEach((job, index) => {
      seen.add(job.id);
      let entry = rows.get(job.id);
      if (entry) entry.update(job);
      else {
        entry = jobRow(job, actions);
        rows.set(job.id, entry);
      }
      if (tbody.children[index] !== entry.row) tbody.insertBefore(entry.row, tbody.children[index] || null);
    });
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.row.remove();
        rows.delete(id);
      }
    }
    table.hidden = jobs.length === 0;
    state.hidden = jobs.length !== 0;
    if (!jobs.length) replace(state, "No jobs yet. Upload a video above to start one.");
    const pages = Math.max(1, Math.ceil((answer.total || 0) / PER_PAGE));
    pager.hidden = pages <= 1;
    newer.disabled = page <= 1;
    older.disabled = page >= pages;
    setText(pageText, `Page ${page} of ${pages} · ${answer.total} jobs`);
    // Poll every second while anything moves; otherwise stop until something changes.
    if (jobs.some(isActive)) timer = setTimeout(refresh, POLL_MS);
  }

  function retryButton() {
    return h("button", { type: "button", class: "small", onclick: () => refresh() }, "Try again");
  }

  root.append(
    h(
      "div",
      { class: "home" },
      uploadForm({
        onUploaded: () => {
          page = 1;
          refresh();
        },
      }),
      h("section", { class: "card list", "aria-labelledby": "jobs-title" }, h("h2", { id: "jobs-title" }, "Jobs"), state, table, pager),
    ),
  );
  document.title = "Jobs · detector";
  refresh();
  const onVisible = () => {
    if (!document.hidden) refresh();
  };
  document.addEventListener("visibilitychange", onVisible);
  return {
    destroy() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
    },
  };
}
