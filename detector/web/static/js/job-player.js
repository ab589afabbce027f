// The job page's player: the video, the detections drawn over it on a canvas in
// step with playback, hovering, the class filter and the score slider, the
// original or annotated source (with media tokens), and the timeline under it.

import * as api from "./api.js";
import { DetectionStore } from "./detections.js";
import { colourOf, formatSeconds, h, replace, setText } from "./dom.js";
import { boxMapper } from "./geometry.js";
import { jobTimeline } from "./job-timeline.js";

/** Seconds an analysed frame's objects stay on screen: the spacing the job's options give. */
function frameSpacing(job) {
  const fps = (job.video && job.video.fps) || 25;
  const options = job.options || {};
  let spacing = 1 / fps;
  if (options.sample_fps) spacing = Math.max(spacing, 1 / options.sample_fps);
  if (options.frame_stride && options.frame_stride > 1) spacing = Math.max(spacing, options.frame_stride / fps);
  return spacing * 1.5;
}

/**
 * The player section, appended to ``slot``.
 * @param job the succeeded job
 * @param ctx the job page's context: signal, later(fn, ms), objectUrls, destroyed(), params
 *   (the page's query: frames_per_page, and t, the time to open the video at)
 * @returns {store, video, stage, seek(time), jobChanged(job)}
 */
export function buildPlayer(slot, job, ctx) {
  const { signal, later, objectUrls, params } = ctx;
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

  const seek = (time) => {
    video.currentTime = time;
    draw(time);
  };
  const timelinePart = jobTimeline(job, ctx, { onSeek: seek });
  const timeline = timelinePart.timeline;

  const controls = h(
    "div",
    { class: "controls" },
    h("div", { class: "field check-field" }, showBoxes, h("label", { htmlFor: showBoxes.id }, "Draw boxes")),
    h("div", { class: "field" }, h("label", { htmlFor: source.id }, "Video"), source),
    h("div", { class: "field score-field" }, h("label", { htmlFor: score.id }, "Minimum score"), score, scoreOut),
  );
  slot.append(
    h(
      "section",
      { class: "card player", "aria-label": "Video and detections" },
      stage,
      here,
      timelinePart.node,
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
    fetchPage: (start, limit) => api.api(api.jobPath(job.id, `/detections?start=${start}&limit=${limit}`), { signal }),
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
      if (!ctx.destroyed()) video.requestVideoFrameCallback(step);
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
      raf = video.paused || ctx.destroyed() ? null : requestAnimationFrame(tick);
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
  // #/jobs/<id>?t=12.3 opens the video at 12.3 s (a search result's moment, say).
  const startAt = Math.max(0, Number(params.get("t")) || 0);
  async function loadSources(keepTime) {
    const time = keepTime ? video.currentTime : startAt;
    const paused = video.paused;
    try {
      media = await api.api(api.jobPath(job.id, "/media-token"), { method: "POST", signal });
    } catch (failure) {
      if (failure.name === "AbortError") return;
      if (failure.status !== 404 && failure.status !== 405) {
        setText(here, `Could not play the video: ${failure.message}`);
        return;
      }
      // A service without media tokens: the original video through an authenticated fetch.
      try {
        const file = await api.download(api.jobPath(job.id, "/video"), job.filename || "video");
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

  // The timeline's pages, in the background, after the playhead's.
  timelinePart.load(store, {
    onFrames: (frames) => {
      for (const frame of frames) for (const object of frame.objects) addLabel(object.label);
    },
    view: () => ({ visible: visibleLabel, minScore: Number(score.value), time: lastTime }),
  });

  return {
    store,
    video,
    stage,
    seek,
    jobChanged(current) {
      latest = current;
      const annotated = source.querySelector('option[value="annotated"]');
      if (current.render && current.render.status === "succeeded" && !annotated) {
        source.append(h("option", { value: "annotated" }, "Annotated"));
        if (media && !media.annotated_url) loadSources(true);
      }
    },
  };
}
