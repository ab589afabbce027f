// Building the page from data without ever parsing data as HTML.
//
// Every text that comes from the API (file names, labels, error messages) goes
// into the page as a text node or a property, never through innerHTML, so a
// file named "<img src=x onerror=alert(1)>.mp4" shows as exactly that text.

// Props set as DOM properties rather than attributes.
const PROPERTIES = new Set([
  "value", "checked", "disabled", "hidden", "htmlFor", "selected", "multiple",
  "min", "max", "step", "required", "tabIndex", "download", "controls", "muted",
  "playsInline", "preload", "indeterminate", "open",
]);
// Never set from here: they would parse HTML or run code.
const FORBIDDEN = new Set(["innerHTML", "outerHTML", "srcdoc", "style"]);

/**
 * h("button", {class: "primary", onclick: fn}, "Save") -> <button class="primary">Save</button>
 * Children are nodes, strings (as text), numbers, arrays of those, or null (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN.has(key) || (/^on/i.test(key) && typeof value !== "function")) {
      throw new Error(`h(): ${key} is not allowed`);
    }
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (typeof value === "function" && key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything in ``el`` with ``children``. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Set a text only when it changed (keeps screen readers and selections calm while polling). */
export function setText(el, text) {
  const value = String(text ?? "");
  if (el.textContent !== value) el.textContent = value;
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatDate(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** A stable colour per class label: the same label is the same colour everywhere. */
export function colourOf(label) {
  let hash = 0;
  for (const char of String(label)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 90% 55%)`;
}
