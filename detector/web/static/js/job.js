// One job (#/jobs/<id>): progress while it runs; then the video with its
// detections drawn over it, the timeline, the exports and the annotated video.

import * as api from "./api.js";
import { DetectionStore } from "./detections.js";
import { colourOf, formatBytes, formatSeconds, h, replace, setText } from "./dom.js";
import { boxMapper } from "./geometry.js";
import { isActive, progressText, statusBadge } from "./jobs.js";
import { Timeline } from "./timeline.js";

const POLL_MS = 1000;
// The timeline's background pages: the most the API gives at once.
const TIMELINE_LIMIT = 1000;
const EXPORTS = [
  { format: "coco", title: "COCO JSON", extension: "json" },
  { format: "mot", title: "MOT (tracks)", extension: "txt", tracked: true },
  { format: "cvat", title: "CVAT XML", extension: "xml" },
  { format: "csv", title: "CSV", extension: "csv" },
  { format: "jsonl", title: "JSON Lines", extension: "jsonl" },
];

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

function jobPath(id, rest = "") {
  return `/api/jobs/${encodeURIComponent(id)}${rest}`;
}

function stem(filename) {
  return String(filename || "video").replace(/\.[^.]*$/, "") || "video";
}

/** Seconds an analysed frame's objects stay on screen: the spacing the job's options give. */
function frameSpacing(job) {
  const fps = (job.video && job.video.fps) || 25;
  const options = job.options || {};
  let spacing = 1 / fps;
  if (options.sample_fps) spacing = Math.max(spacing, 1 / options.sample_fps);
  if (options.frame_stride && options.frame_stride > 1) spacing = Math.max(spacing, options.frame_stride / fps);
  return spacing * 1.5;
}

export function jobView(root, jobId, params = new URLSearchParams()) {
  const controller = new AbortController();
  const signal = controller.signal;
  const timers = new Set();
  const objectUrls = new Set();
  let job = null;
  let player = null;
  let destroyed = false;

  const later = (fn, ms) => {
    const id = setTimeout(() => {
      timers.delete(id);
      if (!destroyed) fn();
    }, ms);
    timers.add(id);
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
      show(await api.api(jobPath(jobId, "/cancel"), { method: "POST" }));
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
      player = buildPlayer(job);
      buildSide(job);
    }
    if (player) player.jobChanged(job);
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      show(await api.api(jobPath(jobId), { signal }));
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

  // --- Exports and the annotated video ------------------------------------------------

  function buildSide(job) {
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
          const file = await api.download(jobPath(job.id, `/export?format=${spec.format}`), `${stem(job.filename)}.${spec.extension}`);
          objectUrls.add(file.url);
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
    side.append(
      h("section", { class: "card exports" }, h("h2", {}, "Export detections"), h("div", { class: "button-row" }, buttons), exportError, links),
      renderSection(job),
    );
  }

  function renderSection() {
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
        const render = await api.api(jobPath(jobId, "/render"), { method: "POST" });
        show({ ...job, render });
        later(poll, POLL_MS);
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
        const media = await api.api(jobPath(jobId, "/media-token"), { method: "POST" });
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
    sideSections.push(section);
    return section;
  }
  const sideSections = [];

  // --- The player ---------------------------------------------------------------------

  function buildPlayer(job) {
    const video = h("video", { class: "video", controls: true, preload: "auto", playsInline: true, muted: true });
    video.setAttribute("aria-label", `Video: ${job.filename || job.id}`);
    const overlay = h("canvas", { class: "overlay", "aria-hidden": "true" });
    const tip = h("div", { class: "tip", role: "tooltip", hidden: true });
    const stage = h("div", { class: "stage" }, video, overlay, tip);
    const here = h("p", { class: "here", "aria-live": "off" });
    const objectsList = h("ul", { class: "objects" });

    const showBoxes = h("input", { type: "checkbox", id: "show-boxes", checked: true });
    const source = h("select", { id: "video-source" }, h("option", { value: "original" }, "Original"));
    // The annotated video, when it exists, is the one shown first: its boxes are drawn
    // in already, so the overlay starts switched off there (hovering still names them).
    if (job.render && job.render.status === "succeeded") {
      source.append(h("option", { value: "annotated", selected: true }, "Annotated"));
      showBoxes.checked = false;
    }
    const score = h("input", { type: "range", id: "min-score", min: 0, max: 1, step: 0.01, value: Number(job.score_threshold) || 0 });
    const scoreOut = h("output", { htmlFor: score.id, class: "score-out" });
    const classes = h("fieldset", { class: "class-filter" }, h("legend", {}, "Classes"));
    const allClasses = h("button", { type: "button", class: "small" }, "All");
    const noClasses = h("button", { type: "button", class: "small" }, "None");
    classes.append(h("div", { class: "button-row" }, allClasses, noClasses));
    const classList = h("div", { class: "label-grid" });
    classes.append(classList);
    const timelineCanvas = h("canvas", { class: "timeline", id: "timeline" });
    const timelineState = h("span", { class: "timeline-state" });

    const controls = h(
      "div",
      { class: "controls" },
      h("div", { class: "field check-field" }, showBoxes, h("label", { htmlFor: showBoxes.id }, "Draw boxes")),
      h("div", { class: "field" }, h("label", { htmlFor: source.id }, "Video"), source),
      h("div", { class: "field score-field" }, h("label", { htmlFor: score.id }, "Minimum score"), score, scoreOut),
    );
    playerSlot.append(
      h(
        "section",
        { class: "card player", "aria-label": "Video and detections" },
        stage,
        here,
        h("div", { class: "timeline-box" }, h("label", { htmlFor: timelineCanvas.id, class: "timeline-label" }, "Objects per second, by class ", timelineState), timelineCanvas),
        controls,
        classes,
        h("details", { class: "objects-box" }, h("summary", {}, "Objects in this frame"), objectsList),
      ),
    );

    const hidden = new Set(); // labels unticked in the class filter
    const labels = new Set();
    const visibleLabel = (label) => !hidden.has(label);
    const visible = (object) => visibleLabel(object.label) && object.score >= Number(score.value) - 1e-9;
    let lastTime = 0;
    let drawn = [];
    let lastFrame = null;

    const block = Number(params.get("frames_per_page")) || undefined;
    const store = new DetectionStore({
      fps: job.video.fps,
      framesTotal: (job.progress && job.progress.frames_total) || job.video.frame_count,
      block,
      maxGap: frameSpacing(job),
      fetchPage: (start, limit) => api.api(jobPath(job.id, `/detections?start=${start}&limit=${limit}`), { signal }),
      onLoad: () => {
        for (const range of store.ranges) for (const frame of range.frames) for (const object of frame.objects) addLabel(object.label);
        if (store.error) setText(here, `Could not load detections: ${store.error.message}`);
        draw(lastTime);
      },
    });
    stage.dataset.block = String(store.block);

    function addLabel(label) {
      if (labels.has(label)) return;
      labels.add(label);
      const id = `class-${labels.size}`;
      const box = h("input", { type: "checkbox", id, value: label, checked: !hidden.has(label) });
      box.addEventListener("change", () => {
        if (box.checked) hidden.delete(label);
        else hidden.add(label);
        redraw();
      });
      const entry = h("label", { class: "check", htmlFor: id, dataset: { label } }, box, h("span", { class: "swatch", "aria-hidden": "true" }), label);
      entry.querySelector(".swatch").style.backgroundColor = colourOf(label);
      // Keep the list sorted by label.
      const after = [...classList.children].find((node) => node.dataset.label > label);
      classList.insertBefore(entry, after || null);
    }
    const setAll = (on) => {
      for (const box of classList.querySelectorAll("input")) {
        box.checked = on;
        if (on) hidden.delete(box.value);
        else hidden.add(box.value);
      }
      redraw();
    };
    allClasses.addEventListener("click", () => setAll(true));
    noClasses.addEventListener("click", () => setAll(false));

    const timeline = new Timeline(timelineCanvas, {
      duration: job.video.duration || (job.video.frame_count || 1) / (job.video.fps || 25),
      onSeek: (time) => {
        video.currentTime = time;
        draw(time);
      },
    });

    // --- Drawing ---
    function draw(time) {
      lastTime = time;
      const ratio = window.devicePixelRatio || 1;
      const width = video.clientWidth;
      const height = video.clientHeight;
      if (overlay.width !== Math.round(width * ratio) || overlay.height !== Math.round(height * ratio)) {
        overlay.width = Math.round(width * ratio);
        overlay.height = Math.round(height * ratio);
      }
      const ctx = overlay.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      drawn = [];
      const { frame, loading } = store.frameAt(time);
      overlay.dataset.frame = frame ? String(frame.frame) : "";
      overlay.dataset.time = String(time);
      timeline.draw({ visible: visibleLabel, minScore: Number(score.value), time });
      if (!frame) {
        setText(here, loading ? "Loading detections…" : `${formatSeconds(time)} · no analysed frame here`);
        lastFrame = null;
        return;
      }
      const shownObjects = frame.objects.filter(visible);
      setText(here, `${formatSeconds(time)} · frame ${frame.frame} · ${shownObjects.length} of ${frame.objects.length} objects shown`);
      if (frame !== lastFrame && (video.paused || video.ended)) listObjects(frame, shownObjects);
      lastFrame = frame;
      if (!video.videoWidth) return;
      const map = boxMapper(job.video, video);
      // Where each box is on screen (for hovering), drawn unless the boxes are switched off.
      drawn = shownObjects.map((object) => ({ rect: map(object.box), object }));
      if (!showBoxes.checked) return;
      ctx.lineWidth = 2;
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "bottom";
      for (const { rect, object } of drawn) {
        const colour = colourOf(object.label);
        ctx.strokeStyle = colour;
        ctx.strokeRect(rect.x, rect.y, rect.width, rect.height);
        const text = `${object.label} ${object.score.toFixed(2)}`;
        const textWidth = ctx.measureText(text).width + 6;
        const top = rect.y >= 16 ? rect.y - 16 : rect.y;
        ctx.fillStyle = colour;
        ctx.fillRect(rect.x - 1, top, textWidth, 16);
        ctx.fillStyle = "#000";
        ctx.fillText(text, rect.x + 2, top + 15);
      }
    }
    const redraw = () => {
      setText(scoreOut, Number(score.value).toFixed(2));
      lastFrame = null;
      draw(lastTime);
    };

    function listObjects(frame, shownObjects) {
      replace(
        objectsList,
        shownObjects.length
          ? shownObjects.map((object) => h("li", {}, describe(object), ` [${object.box.map((v) => Math.round(v)).join(", ")}]`))
          : h("li", {}, "None shown."),
      );
    }

    function describe(object) {
      const track = object.track_id === undefined || object.track_id === null ? "" : ` · track ${object.track_id}`;
      return `${object.label} ${object.score.toFixed(2)}${track}`;
    }

    // Hover: the smallest box under the pointer.
    stage.addEventListener("mousemove", (event) => {
      const bounds = overlay.getBoundingClientRect();
      const x = event.clientX - bounds.left;
      const y = event.clientY - bounds.top;
      let best = null;
      for (const entry of drawn) {
        const r = entry.rect;
        if (x >= r.x && x <= r.x + r.width && y >= r.y && y <= r.y + r.height) {
          if (!best || r.width * r.height < best.rect.width * best.rect.height) best = entry;
        }
      }
      if (!best) {
        tip.hidden = true;
        return;
      }
      setText(tip, describe(best.object));
      tip.hidden = false;
      tip.style.left = `${Math.min(x + 12, bounds.width - tip.offsetWidth - 4)}px`;
      tip.style.top = `${Math.min(y + 12, bounds.height - tip.offsetHeight - 4)}px`;
    });
    stage.addEventListener("mouseleave", () => {
      tip.hidden = true;
    });

    // In step with the video: each frame the browser shows, where it says so.
    let frameCallbacks = 0;
    if ("requestVideoFrameCallback" in video) {
      const step = (_now, metadata) => {
        frameCallbacks += 1;
        draw(metadata.mediaTime);
        if (!destroyed) video.requestVideoFrameCallback(step);
      };
      video.requestVideoFrameCallback(step);
      video.addEventListener("seeked", () => {
        // A seek to the frame already shown presents no new frame: draw from currentTime then.
        const before = frameCallbacks;
        later(() => {
          if (frameCallbacks === before) draw(video.currentTime);
        }, 150);
      });
    } else {
      let raf = null;
      const tick = () => {
        draw(video.currentTime);
        raf = video.paused || destroyed ? null : requestAnimationFrame(tick);
      };
      video.addEventListener("play", () => {
        if (!raf) raf = requestAnimationFrame(tick);
      });
      for (const type of ["timeupdate", "seeked"]) video.addEventListener(type, () => draw(video.currentTime));
    }
    video.addEventListener("loadeddata", () => draw(video.currentTime));
    video.addEventListener("pause", () => {
      lastFrame = null;
      draw(video.currentTime);
    });
    new ResizeObserver(() => draw(lastTime)).observe(video);
    for (const input of [showBoxes, score]) input.addEventListener("input", redraw);
    showBoxes.addEventListener("change", redraw);
    redraw();

    // --- Sources: the original, or the annotated video once it exists ---
    let latest = job; // the job as last polled (its render changes)
    let media = null;
    let retries = 0;
    async function loadSources(keepTime) {
      const time = keepTime ? video.currentTime : 0;
      const paused = video.paused;
      try {
        media = await api.api(jobPath(job.id, "/media-token"), { method: "POST", signal });
      } catch (failure) {
        if (failure.name === "AbortError") return;
        if (failure.status !== 404 && failure.status !== 405) {
          setText(here, `Could not play the video: ${failure.message}`);
          return;
        }
        // A service without media tokens: the original video through an authenticated fetch.
        try {
          const file = await api.download(jobPath(job.id, "/video"), job.filename || "video");
          objectUrls.add(file.url);
          media = { video_url: file.url, annotated_url: null };
        } catch (again) {
          setText(here, `This service does not stream videos (${again.message}); the detections are below.`);
          media = null;
          return;
        }
      }
      useSource(source.value, time, paused);
    }
    function annotatedReady() {
      return Boolean(media && media.annotated_url && latest.render && latest.render.status === "succeeded");
    }
    function useSource(which, time = video.currentTime, paused = video.paused) {
      if (!media) return;
      const url = which === "annotated" && annotatedReady() ? media.annotated_url : media.video_url;
      if (video.src === new URL(url, location.href).href) return;
      video.src = url;
      video.addEventListener(
        "loadedmetadata",
        () => {
          if (time) video.currentTime = time;
          if (!paused) video.play().catch(() => {});
        },
        { once: true },
      );
    }
    source.addEventListener("change", () => {
      // The annotated video has the boxes drawn in: no second set on top, unless asked.
      showBoxes.checked = source.value !== "annotated";
      useSource(source.value);
      redraw();
    });
    // An expired media token (or a dropped connection): new URLs, same place in the video.
    // Anything else the API refused (a video deleted after its retention period, say) is
    // shown in its own words; the detections, timeline and exports stay usable.
    const videoProblem = h("p", { class: "error", role: "alert", hidden: true });
    stage.after(videoProblem);
    video.addEventListener("error", async () => {
      if (!video.src || video.src.startsWith("blob:")) return;
      let answer = null;
      try {
        answer = await fetch(video.src, { headers: { Range: "bytes=0-0" }, signal });
      } catch {
        // The service is unreachable: try again below.
      }
      if (answer && !answer.ok && answer.status !== 401) {
        let message = `the server answered ${answer.status}`;
        try {
          const body = await answer.json();
          message = (body.error && body.error.message) || body.message || message;
        } catch {
          // Not JSON.
        }
        videoProblem.textContent = `The video cannot be played: ${message}`;
        videoProblem.hidden = false;
        return;
      }
      if (answer && answer.ok && retries >= 1) {
        videoProblem.textContent = "The video cannot be played in this browser.";
        videoProblem.hidden = false;
        return;
      }
      if (retries >= 3) return;
      retries += 1;
      later(() => loadSources(true), 500 * retries);
    });
    video.addEventListener("playing", () => {
      retries = 0;
    });
    loadSources(false);

    // --- The timeline's pages, in the background, after the playhead's ---
    (async () => {
      let start = 0;
      const total = store.framesTotal;
      setText(timelineState, "(loading…)");
      while (start !== null && start !== undefined && !destroyed) {
        while (store.busy() && !destroyed) await new Promise((resolve) => setTimeout(resolve, 100));
        let page;
        try {
          page = await api.api(jobPath(job.id, `/detections?start=${start}&limit=${TIMELINE_LIMIT}`), { signal });
        } catch (failure) {
          if (failure.name !== "AbortError") setText(timelineState, `(stopped: ${failure.message})`);
          return;
        }
        timeline.add(page.frames || []);
        for (const frame of page.frames || []) for (const object of frame.objects) addLabel(object.label);
        start = page.next_start;
        const until = start === null || start === undefined ? total : start;
        timeline.loadedUntil = (until / total) * timeline.duration;
        setText(timelineState, start === null || start === undefined ? "" : `(loading… ${Math.round((100 * until) / total)} %)`);
        timeline.draw({ visible: visibleLabel, minScore: Number(score.value), time: lastTime });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      timelineCanvas.dataset.complete = "1";
    })();

    return {
      store,
      jobChanged(current) {
        latest = current;
        const annotated = source.querySelector('option[value="annotated"]');
        if (current.render && current.render.status === "succeeded" && !annotated) {
          source.append(h("option", { value: "annotated" }, "Annotated"));
          if (media && !media.annotated_url) loadSources(true);
        }
        for (const section of sideSections) section.update(current);
      },
    };
  }

  poll();
  return {
    destroy() {
      destroyed = true;
      controller.abort();
      for (const id of timers) clearTimeout(id);
      for (const url of objectUrls) URL.revokeObjectURL(url);
    },
  };
}
