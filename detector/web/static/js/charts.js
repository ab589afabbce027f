// Small SVG bar charts: a few series of counts per interval, bars side by side.
//
// Built with createElementNS (never from markup); colours come from the
// series' CSS classes in app.css. Each bar carries a <title> (its interval,
// series and value) that browsers show on hover and screen readers read.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/**
 * A bar chart of counts per interval.
 * @param intervals [{start, end}] in seconds, one group of bars each
 * @param series [{name, className, values: [number per interval]}]
 * @param label the chart's accessible name
 * @returns an <svg> element that scales to its container's width
 */
export function barChart({ intervals, series, label, height = 90 }) {
  const width = 600;
  const top = 12;
  const bottom = 16;
  const plot = height - top - bottom;
  const highest = Math.max(1, ...series.flatMap((s) => s.values));
  const groups = Math.max(1, intervals.length);
  const groupWidth = width / groups;
  const gap = groupWidth > 8 ? Math.min(6, groupWidth * 0.2) : 0;
  const barWidth = Math.max(0.5, (groupWidth - gap) / Math.max(1, series.length));
  const chart = svg("svg", {
    class: "bar-chart",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": label,
  });
  chart.append(svg("line", { class: "axis", x1: 0, y1: top + plot, x2: width, y2: top + plot }));
  intervals.forEach((interval, i) => {
    series.forEach((s, k) => {
      const value = s.values[i] || 0;
      const barHeight = (value / highest) * plot;
      chart.append(
        svg(
          "rect",
          {
            class: `bar ${s.className}`,
            x: (i * groupWidth + gap / 2 + k * barWidth).toFixed(2),
            y: (top + plot - barHeight).toFixed(2),
            width: barWidth.toFixed(2),
            height: barHeight.toFixed(2),
            "data-series": s.name,
            "data-interval": i,
            "data-value": value,
          },
          svg("title", {}, `${s.name} ${value} · ${interval.start} s to ${interval.end} s`),
        ),
      );
    });
  });
  chart.append(svg("text", { class: "chart-scale", x: 2, y: 10 }, `max ${highest}`));
  return chart;
}
