// The job page's analytics panel (docs/analytics.md): zones and lines drawn over
// the video, a run of the analytics API with its progress, then the counts per
// line and per zone, bar charts per interval, the events (a click seeks the
// player there), the heatmap over the video and the exports. The panel opens on
// the job's newest analytics, so its shapes can be edited and run again.
//
// Drawing: "Draw zone", then a click per corner and a click on the first corner
// (or "Finish zone", or Enter) to close it; "Draw line", then two clicks. Points
// are kept in pixels of the stored frame, as the API wants them, and can be typed
// too ("x,y x,y …"), which is also how the keyboard edits them.

import * as api from "./api.js";
import { barChart } from "./charts.js";
import { formatSeconds, h, replace, setText } from "./dom.js";
import { pointMapper } from "./geometry.js";

const POLL_MS = 1000;
// A click this close (CSS pixels) to a zone's first corner closes the zone.
const CLOSE_PX = 10;
// The events listed at once; the rest are in the exports.
const EVENTS_SHOWN = 500;
const ANCHORS = ["bottom_center", "center", "top_center", "bottom_left", "bottom_right", "top_left", "top_right"];
const INTERVALS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const PALETTE = ["#38bdf8", "#f472b6", "#a3e635", "#fbbf24", "#c084fc", "#fb7185", "#2dd4bf", "#f97316"];
const EXPORTS = [
  { format: "events-csv", title: "Events CSV", extension: "csv" },
  { format: "events-jsonl", title: "Events JSON Lines", extension: "jsonl" },
  { format: "counts-csv", title: "Counts CSV", extension: "csv" },
];

/** An interval that gives about 20 bars over the video: 1, 2, 5, 10, 15, 30 s, 1 min… */
function defaultInterval(duration) {
  return INTERVALS.find((step) => step >= (duration || 0) / 20) || 3600;
}

const round1 = (value) => Math.round(value * 10) / 10;

/** "12,30 80,30" -> [[12, 30], [80, 30]]; null when it is not a list of number pairs. */
export function parsePoints(text) {
  const pairs = String(text).trim().split(/\s+/).filter(Boolean);
  const points = pairs.map((pair) => pair.split(",").map(Number));
  if (!points.length || points.some((p) => p.length !== 2 || !p.every(Number.isFinite))) return null;
  return points;
}

export function formatPoints(points) {
  return points.map(([x, y]) => `${round1(x)},${round1(y)}`).join(" ");
}

/** The unit normal of a line pointing to its ``side`` (left or right of first -> second point, y down). */
export function sideNormal([[x1, y1], [x2, y2]], side) {
  const length = Math.hypot(x2 - x1, y2 - y1) || 1;
  const left = [(y2 - y1) / length, -(x2 - x1) / length];
  return side === "left" ? left : [-left[0], -left[1]];
}

/** A count per interval of one class-keyed series: {"person": 3, "car": 1} per interval -> [4, …]. */
function totals(intervals, key) {
  return intervals.map((counts) => Object.values((counts && counts[key]) || {}).reduce((a, b) => a + b, 0));
}

/**
 * The panel, for a succeeded job whose player is on the page.
 * @param ctx the job page's context (signal, later, objectUrls, destroyed, onDestroy)
 * @param player the player (its stage, video and seek(time))
 */
export function analyticsPanel(job, ctx, player) {
  const shapes = []; // {kind: "zone" | "line", name, points, in, classes, colour}
  let tool = null; // the shape being drawn: {kind, points}
  let pointer = null; // where the pointer is over the video while drawing (CSS pixels)
  let current = null; // the analytics shown, as the API answered it
  let heatmapUrl = null; // {id, url} of the heatmap fetched for the analytics shown

  // --- Over the video: the heatmap (under the boxes) and the shapes (over them) ---
  // The heatmap's <img> is made when first shown.
  let heat = null;
  const heatShown = () => Boolean(heat && !heat.hidden);
  const layer = h("canvas", { class: "analytics-layer", "aria-hidden": "true" });
  player.stage.append(layer);

  // --- The panel ---
  const drawZone = h("button", { type: "button", class: "small", id: "draw-zone" }, "Draw zone");
  const drawLine = h("button", { type: "button", class: "small", id: "draw-line" }, "Draw line");
  const finish = h("button", { type: "button", class: "small", hidden: true }, "Finish zone");
  const stop = h("button", { type: "button", class: "small", hidden: true }, "Cancel drawing");
  const drawState = h("p", { class: "hint draw-state", "aria-live": "polite" });
  // Without a pointer: a shape's points typed in frame pixels.
  const typedPoints = h("input", { type: "text", id: "typed-points", placeholder: "10,20 150,20 150,90", spellcheck: "false" });
  const addTypedZone = h("button", { type: "button", class: "small" }, "Add as zone");
  const addTypedLine = h("button", { type: "button", class: "small" }, "Add as line");
  const typing = h(
    "details",
    { class: "typed-shape" },
    h("summary", {}, "Type the points instead"),
    h("div", { class: "field" }, h("label", { htmlFor: typedPoints.id }, "Points (x,y in frame pixels, space separated)"), typedPoints),
    h("div", { class: "button-row" }, addTypedZone, addTypedLine),
  );
  const shapeList = h("ul", { class: "shapes" });
  const interval = h("input", { type: "number", id: "analytics-interval", min: 0.1, step: "any", value: defaultInterval(job.video && job.video.duration) });
  const anchor = h("select", { id: "analytics-anchor" }, ANCHORS.map((name) => h("option", { value: name }, name.replace("_", " "))));
  const minDwell = h("input", { type: "number", id: "analytics-min-dwell", min: 0, step: "any", value: 0 });
  const run = h("button", { type: "button", class: "primary", id: "run-analytics" }, "Run analytics");
  const progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Analytics progress" });
  const status = h("p", { class: "analytics-status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const results = h("div", { class: "analytics-results" });
  // Folded until opened: a job page asks the analytics API nothing until then.
  const fold = h("details", { class: "analytics-box" });
  const section = h("section", { class: "card analytics", "aria-label": "Analytics" }, fold);
  fold.append(
    h("summary", {}, h("h2", {}, "Analytics: zones and lines")),
    h("p", { class: "hint" }, "Pause on a frame and draw over the video: a zone is the corners of an area, a line two points and the side that counts as in. Run to count crossings, entries, exits and time spent."),
    h("div", { class: "button-row" }, drawZone, drawLine, finish, stop),
    drawState,
    typing,
    shapeList,
    h(
      "div",
      { class: "analytics-settings" },
      h("div", { class: "field" }, h("label", { htmlFor: interval.id }, "Interval (s)"), interval),
      h("div", { class: "field" }, h("label", { htmlFor: anchor.id }, "Point of a box"), anchor),
      h("div", { class: "field" }, h("label", { htmlFor: minDwell.id }, "Shortest visit (s)"), minDwell),
    ),
    h("div", { class: "button-row" }, run, progress, status),
    error,
    results,
  );

  function fail(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  // --- Shapes ---
  function nextName(kind) {
    let n = 1;
    while (shapes.some((shape) => shape.name === `${kind} ${n}`)) n += 1;
    return `${kind} ${n}`;
  }

  function addShape(shape) {
    shapes.push({ in: "left", classes: [], ...shape, colour: PALETTE[shapes.length % PALETTE.length] });
    changed();
  }

  function changed() {
    listShapes();
    paint();
    run.disabled = shapes.length === 0;
    if (current && current.status === "succeeded") setText(status, "The shapes changed: run again to count with them.");
  }

  function listShapes() {
    replace(
      shapeList,
      shapes.map((shape, index) => {
        const label = `${shape.kind} ${index + 1}`;
        const name = h("input", { type: "text", value: shape.name, "aria-label": `Name of ${label}`, class: "shape-name", maxlength: 64 });
        name.addEventListener("change", () => {
          shape.name = name.value.trim() || shape.name;
          changed();
        });
        const points = h("input", { type: "text", value: formatPoints(shape.points), "aria-label": `Points of ${label} (x,y in frame pixels)`, class: "shape-points" });
        points.addEventListener("change", () => {
          const parsed = parsePoints(points.value);
          if (parsed && parsed.length >= (shape.kind === "zone" ? 3 : 2) && (shape.kind === "zone" || parsed.length === 2)) {
            shape.points = parsed;
            fail("");
          } else {
            fail(`${shape.name}: points are "x,y" pairs separated by spaces (${shape.kind === "zone" ? "three or more" : "two"})`);
          }
          changed();
        });
        const classes = h("input", { type: "text", value: shape.classes.join(", "), placeholder: "every class", "aria-label": `Classes of ${label}`, class: "shape-classes" });
        classes.addEventListener("change", () => {
          shape.classes = classes.value.split(",").map((c) => c.trim()).filter(Boolean);
          changed();
        });
        let side = null;
        if (shape.kind === "line") {
          side = h(
            "select",
            { "aria-label": `Side of ${label} that counts as in`, class: "shape-in" },
            h("option", { value: "left" }, "in: left, walking from point 1 to 2"),
            h("option", { value: "right" }, "in: right, walking from point 1 to 2"),
          );
          side.value = shape.in;
          side.addEventListener("change", () => {
            shape.in = side.value;
            changed();
          });
        }
        const remove = h("button", { type: "button", class: "small danger" }, "Remove");
        remove.addEventListener("click", () => {
          shapes.splice(shapes.indexOf(shape), 1);
          changed();
        });
        const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
        swatch.style.backgroundColor = shape.colour;
        return h("li", { class: "shape", dataset: { kind: shape.kind, name: shape.name } }, swatch, name, points, side, classes, remove);
      }),
    );
  }

  // --- Drawing over the video ---
  function startTool(kind) {
    player.video.pause();
    tool = { kind, points: [] };
    layer.classList.add("drawing");
    // The buttons are below the video: bring the picture to be drawn on into view.
    player.stage.scrollIntoView({ block: "nearest" });
    toolChanged();
  }

  function endTool() {
    tool = null;
    pointer = null;
    layer.classList.remove("drawing");
    toolChanged();
  }

  function toolChanged() {
    stop.hidden = !tool;
    finish.hidden = !tool || tool.kind !== "zone";
    finish.disabled = !tool || tool.points.length < 3;
    drawZone.disabled = drawLine.disabled = Boolean(tool);
    if (!tool) setText(drawState, "");
    else if (tool.kind === "zone") setText(drawState, `Click the zone's corners (${tool.points.length} so far); click the first corner again, or Finish zone, to close it. Escape cancels.`);
    else setText(drawState, tool.points.length ? "Click the line's second point." : "Click the line's first point.");
    paint();
  }

  function closeZone() {
    if (!tool || tool.kind !== "zone" || tool.points.length < 3) return;
    const points = tool.points;
    endTool();
    addShape({ kind: "zone", name: nextName("zone"), points });
  }

  const mapper = () => pointMapper(job.video, player.video);
  const where = (event) => {
    const bounds = layer.getBoundingClientRect();
    return [event.clientX - bounds.left, event.clientY - bounds.top];
  };

  layer.addEventListener("click", (event) => {
    if (!tool) return;
    const map = mapper();
    const at = where(event);
    if (tool.kind === "zone" && tool.points.length >= 3) {
      const [fx, fy] = map.toScreen(tool.points[0]);
      if (Math.hypot(at[0] - fx, at[1] - fy) <= CLOSE_PX) {
        closeZone();
        return;
      }
    }
    tool.points.push(map.toFrame(at).map(round1));
    if (tool.kind === "line" && tool.points.length === 2) {
      const points = tool.points;
      endTool();
      if (points[0][0] === points[1][0] && points[0][1] === points[1][1]) {
        fail("A line needs two different points.");
        return;
      }
      addShape({ kind: "line", name: nextName("line"), points });
      return;
    }
    toolChanged();
  });
  layer.addEventListener("pointermove", (event) => {
    if (!tool) return;
    pointer = where(event);
    paint();
  });
  const onKey = (event) => {
    if (!tool) return;
    if (event.key === "Escape") endTool();
    else if (event.key === "Enter" && tool.kind === "zone") closeZone();
  };
  window.addEventListener("keydown", onKey);
  ctx.onDestroy(() => window.removeEventListener("keydown", onKey));
  function addTyped(kind) {
    const points = parsePoints(typedPoints.value);
    if (!points || (kind === "zone" ? points.length < 3 : points.length !== 2)) {
      fail(`A ${kind} needs ${kind === "zone" ? "three or more" : "two"} "x,y" points, separated by spaces.`);
      return;
    }
    fail("");
    typedPoints.value = "";
    addShape({ kind, name: nextName(kind), points });
  }
  addTypedZone.addEventListener("click", () => addTyped("zone"));
  addTypedLine.addEventListener("click", () => addTyped("line"));
  drawZone.addEventListener("click", () => startTool("zone"));
  drawLine.addEventListener("click", () => startTool("line"));
  finish.addEventListener("click", closeZone);
  stop.addEventListener("click", endTool);

  function paint() {
    const video = player.video;
    const ratio = window.devicePixelRatio || 1;
    const width = video.clientWidth;
    const height = video.clientHeight;
    if (layer.width !== Math.round(width * ratio) || layer.height !== Math.round(height * ratio)) {
      layer.width = Math.round(width * ratio);
      layer.height = Math.round(height * ratio);
    }
    const c = layer.getContext("2d");
    c.setTransform(ratio, 0, 0, ratio, 0, 0);
    c.clearRect(0, 0, width, height);
    placeHeatmap();
    if (!width || !height) return;
    const map = mapper();
    c.lineWidth = 2;
    c.font = "600 12px system-ui, sans-serif";
    c.textBaseline = "bottom";
    for (const shape of shapes) {
      const points = shape.points.map((p) => map.toScreen(p));
      c.strokeStyle = c.fillStyle = shape.colour;
      c.beginPath();
      points.forEach(([x, y], i) => (i ? c.lineTo(x, y) : c.moveTo(x, y)));
      if (shape.kind === "zone") {
        c.closePath();
        c.globalAlpha = 0.15;
        c.fill();
        c.globalAlpha = 1;
      }
      c.stroke();
      if (shape.kind === "line") arrow(c, shape, map);
      c.fillText(shape.name, points[0][0] + 4, points[0][1] - 3);
    }
    if (tool) {
      const points = tool.points.map((p) => map.toScreen(p));
      c.strokeStyle = c.fillStyle = "#fde047";
      c.setLineDash([5, 4]);
      c.beginPath();
      points.forEach(([x, y], i) => (i ? c.lineTo(x, y) : c.moveTo(x, y)));
      if (pointer && points.length) c.lineTo(pointer[0], pointer[1]);
      c.stroke();
      c.setLineDash([]);
      for (const [x, y] of points) c.fillRect(x - 3, y - 3, 6, 6);
      if (tool.kind === "zone" && points.length >= 3) {
        c.beginPath();
        c.arc(points[0][0], points[0][1], CLOSE_PX, 0, 2 * Math.PI);
        c.stroke();
      }
    }
  }

  /** A line's "in" side: an arrow from its middle, on screen, labelled "in". */
  function arrow(c, shape, map) {
    const [a, b] = shape.points.map((p) => map.toScreen(p));
    const normal = sideNormal([a, b], shape.in);
    const mx = (a[0] + b[0]) / 2;
    const my = (a[1] + b[1]) / 2;
    const tx = mx + normal[0] * 22;
    const ty = my + normal[1] * 22;
    c.beginPath();
    c.moveTo(mx, my);
    c.lineTo(tx, ty);
    c.lineTo(tx - normal[0] * 6 + normal[1] * 5, ty - normal[1] * 6 - normal[0] * 5);
    c.moveTo(tx, ty);
    c.lineTo(tx - normal[0] * 6 - normal[1] * 5, ty - normal[1] * 6 + normal[0] * 5);
    c.stroke();
    c.fillText("in", tx + normal[0] * 4 - 6, ty + normal[1] * 4 + 6);
  }

  function placeHeatmap() {
    if (!heatShown()) return;
    const map = mapper();
    const { picture, rotation, size } = map;
    const turned = rotation === 90 || rotation === 270;
    const scale = picture.width / (turned ? size.height : size.width);
    const width = size.width * scale;
    const height = size.height * scale;
    heat.style.width = `${width}px`;
    heat.style.height = `${height}px`;
    heat.style.left = `${picture.x + (picture.width - width) / 2}px`;
    heat.style.top = `${picture.y + (picture.height - height) / 2}px`;
    // The PNG is the stored frame; the browser shows the video turned (CSS turns clockwise).
    heat.style.transform = rotation ? `rotate(${-rotation}deg)` : "";
  }

  new ResizeObserver(() => paint()).observe(player.video);
  player.video.addEventListener("loadedmetadata", () => paint());

  // --- Running ---
  function spec() {
    const classes = (shape) => (shape.classes.length ? { classes: shape.classes } : {});
    return {
      anchor: anchor.value,
      interval: Number(interval.value),
      min_dwell: Number(minDwell.value) || 0,
      zones: shapes.filter((s) => s.kind === "zone").map((s) => ({ name: s.name, polygon: s.points, ...classes(s) })),
      lines: shapes.filter((s) => s.kind === "line").map((s) => ({ name: s.name, points: s.points, in: s.in, ...classes(s) })),
    };
  }

  for (const input of [interval, anchor, minDwell]) input.addEventListener("change", changed);

  run.disabled = true;
  run.addEventListener("click", async () => {
    if (tool) endTool();
    run.disabled = true;
    fail("");
    try {
      const analytics = await api.api(api.jobPath(job.id, "/analytics"), { method: "POST", json: spec(), signal: ctx.signal });
      show(analytics);
    } catch (failure) {
      if (failure.name !== "AbortError") fail(`The analytics were refused: ${failure.message}`);
    } finally {
      run.disabled = shapes.length === 0;
    }
  });

  /** Show an analytics as the API answered it; follow it until it has finished. */
  function show(analytics) {
    current = analytics;
    section.dataset.analytics = analytics.id;
    section.dataset.status = analytics.status;
    const finished = analytics.status === "succeeded" || analytics.status === "failed";
    progress.hidden = finished;
    if (!finished) {
      progress.value = Number(analytics.progress) || 0;
      setText(status, `${analytics.stage || analytics.status} · ${Math.round(100 * (Number(analytics.progress) || 0))} %`);
      replace(results);
      ctx.later(() => refresh(analytics.id), POLL_MS);
      return;
    }
    if (analytics.status === "failed") {
      setText(status, "");
      fail(`The analytics failed: ${analytics.error || "no reason given"}`);
      replace(results);
      return;
    }
    if (!analytics.results) {
      // An answer without results (a POST that found this spec already done): fetch them.
      refresh(analytics.id);
      return;
    }
    setText(status, `Done: ${analytics.results.tracks} tracks over ${analytics.results.frames} frames.`);
    showResults(analytics);
  }

  async function refresh(id) {
    if (!current || current.id !== id || ctx.destroyed()) return; // a newer run took over
    try {
      const analytics = await api.api(api.jobPath(job.id, `/analytics/${encodeURIComponent(id)}`), { signal: ctx.signal });
      if (current && current.id === id) show(analytics);
    } catch (failure) {
      if (failure.name === "AbortError") return;
      fail(`Could not follow the analytics: ${failure.message}`);
    }
  }

  // --- Results ---
  function showResults(analytics) {
    const r = analytics.results;
    const intervals = r.intervals || [];
    const parts = [];
    if ((r.lines || []).length) {
      parts.push(h("h3", {}, "Lines"), lineTable(r.lines));
      for (const line of r.lines) {
        parts.push(chart(`${line.name}: crossings per interval`, intervals, [
          { name: "in", className: "series-in", values: totals(line.intervals, "in") },
          { name: "out", className: "series-out", values: totals(line.intervals, "out") },
        ]));
      }
    }
    if ((r.zones || []).length) {
      parts.push(h("h3", {}, "Zones"), zoneTable(r.zones));
      for (const zone of r.zones) {
        parts.push(chart(`${zone.name}: entries and exits per interval`, intervals, [
          { name: "entries", className: "series-in", values: totals(zone.intervals, "entries") },
          { name: "exits", className: "series-out", values: totals(zone.intervals, "exits") },
        ]));
      }
    }
    parts.push(eventList(r.events || []), heatmapToggle(analytics), exportButtons(analytics));
    replace(results, parts);
  }

  function chart(title, intervals, series) {
    return h("figure", { class: "chart" }, h("figcaption", {}, title), barChart({ intervals, series, label: title }));
  }

  function row(rule, label, cells) {
    return h("tr", { dataset: { rule, label } }, h("th", { scope: "row" }, label ? "" : rule), h("td", { class: "class" }, label || "all"), cells);
  }

  function lineTable(lines) {
    const body = lines.flatMap((line) => [
      row(line.name, "", [h("td", { class: "count-in" }, line.in), h("td", { class: "count-out" }, line.out)]),
      ...Object.entries(line.by_class || {})
        .sort((a, b) => a[0].localeCompare(b[0]))
        .map(([label, counts]) => row(line.name, label, [h("td", { class: "count-in" }, counts.in), h("td", { class: "count-out" }, counts.out)])),
    ]);
    return h(
      "table",
      { class: "counts line-counts" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Line"), h("th", { scope: "col" }, "Class"), h("th", { scope: "col" }, "In"), h("th", { scope: "col" }, "Out"))),
      h("tbody", {}, body),
    );
  }

  function seconds(value) {
    return value === null || value === undefined ? "—" : formatSeconds(value);
  }

  function zoneTable(zones) {
    const body = zones.flatMap((zone) => {
      const dwell = zone.dwell || {};
      return [
        row(zone.name, "", [
          h("td", { class: "count-entries" }, zone.entries),
          h("td", { class: "count-exits" }, zone.exits),
          h("td", { class: "dwell-p50" }, seconds(dwell.p50)),
          h("td", { class: "dwell-p95" }, seconds(dwell.p95)),
          h("td", { class: "dwell-max" }, seconds(dwell.max)),
          h("td", { class: "peak" }, zone.peak_occupancy ?? "—"),
        ]),
        ...Object.entries(zone.by_class || {})
          .sort((a, b) => a[0].localeCompare(b[0]))
          .map(([label, counts]) =>
            row(zone.name, label, [h("td", { class: "count-entries" }, counts.entries), h("td", { class: "count-exits" }, counts.exits), h("td", { colspan: 4 })]),
          ),
      ];
    });
    const heads = ["Zone", "Class", "Entries", "Exits", "Dwell p50", "p95", "max", "Most inside"];
    return h("table", { class: "counts zone-counts" }, h("thead", {}, h("tr", {}, heads.map((text) => h("th", { scope: "col" }, text)))), h("tbody", {}, body));
  }

  /** The events, in time order (the first EVENTS_SHOWN of the rule chosen); a click seeks there. */
  function eventList(events) {
    const rules = [...new Set(events.map((event) => event.rule))].sort();
    const filter = h("select", { id: "event-rule", class: "event-rule" }, h("option", { value: "" }, "every rule"), rules.map((rule) => h("option", { value: rule }, rule)));
    const list = h("ol", { class: "events" });
    const note = h("p", { class: "hint", hidden: true });
    const summary = h("summary", {}, `Events (${events.length}): click one to see it`);
    const item = (event) => {
      const what = event.kind === "line" ? `crossed ${event.rule} (${event.direction})` : `${event.event === "enter" ? "entered" : "left"} ${event.rule}`;
      const track = event.track_id === null || event.track_id === undefined ? "" : ` #${event.track_id}`;
      const button = h(
        "button",
        { type: "button", class: "event", dataset: { timestamp: event.timestamp, frame: event.frame } },
        h("span", { class: "event-time" }, formatSeconds(event.timestamp)),
        ` ${event.label}${track} ${what}`,
      );
      button.addEventListener("click", () => {
        player.video.pause();
        player.seek(event.timestamp);
      });
      return h("li", {}, button);
    };
    const fill = () => {
      const chosen = filter.value ? events.filter((event) => event.rule === filter.value) : events;
      replace(list, chosen.slice(0, EVENTS_SHOWN).map(item));
      note.hidden = chosen.length <= EVENTS_SHOWN;
      setText(note, `The first ${EVENTS_SHOWN} of ${chosen.length} events; the exports have them all.`);
    };
    filter.addEventListener("change", fill);
    fill();
    return h(
      "details",
      { class: "events-box", open: true },
      summary,
      events.length
        ? [h("div", { class: "field" }, h("label", { htmlFor: filter.id }, "Rule"), filter), list, note]
        : h("p", { class: "hint" }, "No object crossed a line or entered a zone."),
    );
  }

  function heatmapToggle(analytics) {
    const box = h("input", { type: "checkbox", id: "show-heatmap", checked: heatShown() });
    const state = h("span", { class: "hint" });
    box.addEventListener("change", async () => {
      if (!box.checked) {
        if (heat) heat.hidden = true;
        return;
      }
      try {
        if (!heatmapUrl || heatmapUrl.id !== analytics.id) {
          setText(state, "loading…");
          const file = await api.download(api.jobPath(job.id, `/analytics/${encodeURIComponent(analytics.id)}/heatmap`), "heatmap.png");
          ctx.objectUrls.add(file.url);
          heatmapUrl = { id: analytics.id, url: file.url };
        }
        if (!heat) {
          heat = h("img", { class: "heatmap", alt: "" });
          player.video.after(heat);
        }
        heat.src = heatmapUrl.url;
        heat.hidden = !box.checked;
        setText(state, "");
        placeHeatmap();
      } catch (failure) {
        box.checked = false;
        setText(state, `Could not load it: ${failure.message}`);
      }
    });
    if (heatShown() && heatmapUrl && heatmapUrl.id !== analytics.id) {
      heat.hidden = true;
      box.checked = false;
    }
    return h("div", { class: "field check-field" }, box, h("label", { htmlFor: box.id }, "Heatmap over the video (where the objects were)"), state);
  }

  function exportButtons(analytics) {
    const problem = h("p", { class: "error", role: "alert", hidden: true });
    const buttons = EXPORTS.map((spec) => {
      const button = h("button", { type: "button", class: "small", dataset: { format: spec.format } }, spec.title);
      button.addEventListener("click", async () => {
        button.disabled = true;
        problem.hidden = true;
        try {
          const file = await api.download(api.jobPath(job.id, `/analytics/${encodeURIComponent(analytics.id)}/export?format=${spec.format}`), `analytics-${spec.format}.${spec.extension}`);
          ctx.objectUrls.add(file.url);
          h("a", { href: file.url, download: file.filename }).click();
        } catch (failure) {
          problem.textContent = `${spec.title}: ${failure.message}`;
          problem.hidden = false;
        } finally {
          button.disabled = false;
        }
      });
      return button;
    });
    return h("div", { class: "analytics-exports" }, h("div", { class: "button-row" }, buttons), problem);
  }

  // --- When first opened: the job's newest analytics, to show and edit ---
  fold.addEventListener("toggle", () => {
    if (fold.open && !fold.dataset.loaded) {
      fold.dataset.loaded = "1";
      loadNewest();
    }
  });
  async function loadNewest() {
    let list;
    try {
      list = await api.api(api.jobPath(job.id, "/analytics"), { signal: ctx.signal });
    } catch (failure) {
      if (failure.name === "AbortError") return;
      if (failure.status === 404 || failure.status === 405) {
        setText(drawState, "This service has no analytics yet.");
        return;
      }
      fail(`Could not load the job's analytics: ${failure.message}`);
      return;
    }
    const items = Array.isArray(list) ? list : list.analytics || list.items || [];
    if (!items.length || shapes.length || current) return;
    let analytics;
    try {
      analytics = await api.api(api.jobPath(job.id, `/analytics/${encodeURIComponent(items[0].id)}`), { signal: ctx.signal });
    } catch (failure) {
      if (failure.name !== "AbortError") fail(`Could not load the analytics: ${failure.message}`);
      return;
    }
    if (shapes.length || current) return; // the user started drawing meanwhile
    const saved = analytics.spec || {};
    for (const zone of saved.zones || []) addShape({ kind: "zone", name: zone.name, points: zone.polygon, classes: (zone.classes || []).map(String) });
    for (const line of saved.lines || []) addShape({ kind: "line", name: line.name, points: line.points, in: line.in, classes: (line.classes || []).map(String) });
    if (saved.anchor) anchor.value = saved.anchor;
    if (saved.interval) interval.value = saved.interval;
    if (saved.min_dwell !== undefined) minDwell.value = saved.min_dwell;
    show(analytics);
  }

  toolChanged();
  return section;
}
