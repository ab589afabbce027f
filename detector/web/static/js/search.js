// The search page (#/search): moments across all the user's jobs where some labels
// were seen together (GET /api/search, docs/search.md), newest job first, with a
// thumbnail per track; each moment opens its job's player at the moment's start.
//
// The form's values live in the address (#/search?labels=person,dog&window=2&
// min_duration=1), so a search can be reloaded, shared and returned to with Back.

import * as api from "./api.js";
import { formatDate, formatSeconds, h, replace, setText } from "./dom.js";
import { modelLabels } from "./jobs.js";

// A page may hold no moment and still have a next one (the API looks at a bounded
// number of jobs per page): follow this many such pages before asking the user.
const EMPTY_PAGES_FOLLOWED = 5;

/** The job page's address at a time: #/jobs/<id>?t=12.3. */
export function playerHref(jobId, time) {
  return `#/jobs/${encodeURIComponent(jobId)}?t=${Math.max(0, Number(time) || 0)}`;
}

function numberField(id, label, hint, value, attrs) {
  const input = h("input", { id, type: "number", inputmode: "decimal", min: 0, step: "any", value, ...attrs });
  return { input, node: h("div", { class: "field" }, h("label", { htmlFor: id }, label), input, h("span", { class: "hint" }, hint)) };
}

function momentItem(moment) {
  const href = playerHref(moment.job_id, moment.start_time);
  const thumbs = (moment.tracks || []).map((track) => {
    const name = `${track.label} #${track.track_id}`;
    // Only the service's own thumbnails (a same-origin path with its media token).
    const url = typeof track.thumbnail_url === "string" && track.thumbnail_url.startsWith("/api/") ? track.thumbnail_url : null;
    const picture = url ? h("img", { src: url, alt: name, loading: "lazy", width: 64, height: 64 }) : h("span", { class: "thumb-missing" }, "no picture");
    return h("figure", { class: "thumb", dataset: { trackId: track.track_id } }, picture, h("figcaption", {}, name));
  });
  const more = moment.tracks_total > (moment.tracks || []).length ? h("span", { class: "hint" }, `and ${moment.tracks_total - moment.tracks.length} more tracks`) : null;
  return h(
    "li",
    { class: "moment", dataset: { jobId: moment.job_id, start: moment.start_time } },
    h(
      "div",
      {},
      h("a", { class: "moment-file", href }, moment.filename || moment.job_id),
      h(
        "p",
        { class: "moment-facts" },
        `${formatSeconds(moment.start_time)} to ${formatSeconds(moment.end_time)} (${formatSeconds(moment.duration)}) · frames ${moment.start_frame} to ${moment.end_frame} · uploaded ${formatDate(moment.job_created_at)}`,
      ),
    ),
    h("a", { class: "open-moment", href }, `Open at ${formatSeconds(moment.start_time)}`),
    h("div", { class: "thumbs" }, thumbs, more),
  );
}

export function searchView(root, params = new URLSearchParams()) {
  const controller = new AbortController();
  let destroyed = false;

  const labels = h("input", {
    id: "search-labels", name: "labels", type: "text", list: "search-label-list", autocomplete: "off",
    placeholder: "person, dog", spellcheck: "false", required: true, value: params.get("labels") || "",
  });
  const datalist = h("datalist", { id: "search-label-list" });
  const checks = h("div", { class: "label-grid" });
  const chooser = h("details", { class: "label-chooser" }, h("summary", {}, "Pick labels from the model's"), checks);
  chooser.hidden = true;
  const typed = () => labels.value.split(",").map((s) => s.trim()).filter(Boolean);
  const syncChecks = () => {
    const chosen = new Set(typed());
    for (const box of checks.querySelectorAll("input")) box.checked = chosen.has(box.value);
  };
  labels.addEventListener("input", syncChecks);
  modelLabels().then((known) => {
    if (destroyed || !known.length) return;
    known.forEach(({ label }, index) => {
      datalist.append(h("option", { value: label }));
      const box = h("input", { type: "checkbox", value: label, id: `search-label-${index}` });
      box.addEventListener("change", () => {
        const rest = typed().filter((l) => l !== label);
        if (box.checked) rest.push(label);
        labels.value = rest.join(", ");
      });
      checks.append(h("label", { class: "check", htmlFor: box.id }, box, label));
    });
    chooser.hidden = false;
    syncChecks();
  });
  const windowField = numberField("search-window", "Window (s)", "how far apart still counts as together", params.get("window") || "0", { max: 3600 });
  const minDuration = numberField("search-min-duration", "Shortest moment (s)", "shorter ones are left out", params.get("min_duration") || "0", { max: 86400 });
  const submit = h("button", { type: "submit", class: "primary" }, "Search");
  const form = h(
    "form",
    { class: "search-form", id: "search-form" },
    h("div", { class: "field" }, h("label", { htmlFor: labels.id }, "Labels seen together"), labels, datalist, h("span", { class: "hint" }, "comma separated, as the model names them")),
    windowField.node,
    minDuration.node,
    h("div", { class: "field" }, submit),
    chooser,
  );
  const state = h("p", { class: "list-state", "aria-live": "polite" });
  const list = h("ol", { class: "moments" });
  const more = h("button", { type: "button", hidden: true, id: "more-moments" }, "More moments");
  root.append(
    h("section", { class: "card search" }, h("h1", {}, "Search moments"), h("p", { class: "hint" }, "Moments in your tracked videos where all these labels are in view at once."), form),
    h("section", { class: "card results", "aria-label": "Moments" }, state, list, h("div", { class: "pager" }, more)),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams({ labels: typed().join(","), window: windowField.input.value || "0", min_duration: minDuration.input.value || "0" });
    const hash = `#/search?${query}`;
    // A new address draws this page again with the search; the same one searches again here.
    if (location.hash === hash) search(query, null, true);
    else location.hash = hash;
  });

  let found = 0;
  let cursor = null;
  async function search(query, after, fresh) {
    if (fresh) {
      found = 0;
      replace(list);
    }
    more.hidden = true;
    submit.disabled = true;
    setText(state, "Searching…");
    let empty = 0;
    try {
      for (;;) {
        const page = new URLSearchParams(query);
        if (after) page.set("cursor", after);
        const answer = await api.api(`/api/search?${page}`, { signal: controller.signal });
        const moments = answer.moments || [];
        list.append(...moments.map(momentItem));
        found += moments.length;
        after = answer.next_cursor || null;
        if (moments.length || !after || ++empty >= EMPTY_PAGES_FOLLOWED) break;
      }
      cursor = after;
      more.hidden = !cursor;
      setText(state, found ? `${found} moment${found === 1 ? "" : "s"}${cursor ? " so far" : ""}, newest video first.` : cursor ? "No moment yet: there are more videos to look through." : "No moments found.");
    } catch (failure) {
      if (destroyed || failure.name === "AbortError") return;
      setText(state, `The search failed: ${failure.message}`);
    } finally {
      submit.disabled = false;
    }
  }
  more.addEventListener("click", () => search(currentQuery(), cursor, false));

  function currentQuery() {
    const query = new URLSearchParams();
    // limit (moments per page) is not in the form; the address may set it (the tests do).
    for (const key of ["labels", "window", "min_duration", "limit"]) if (params.get(key)) query.set(key, params.get(key));
    return query;
  }

  document.title = "Search · detector";
  if (params.get("labels")) search(currentQuery(), null, true);
  else setText(state, "Choose one or more labels to find the moments they were seen together.");

  return {
    destroy() {
      destroyed = true;
      controller.abort();
    },
  };
}
