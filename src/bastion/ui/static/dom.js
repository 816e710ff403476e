// Building the page without markup strings: every element is created with
// document.createElement and every piece of data becomes a text node (never innerHTML),
// so nothing an API returns can turn into markup. The page's Content-Security-Policy
// requires Trusted Types, so an accidental innerHTML assignment would throw.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "testid") {
      el.setAttribute("data-testid", String(value));
    } else if (key === "value" && "value" in el) {
      el.value = String(value);
    } else if (key === "checked" || key === "disabled" || key === "selected") {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) {
      append(el, child);
    } else if (child instanceof Node) {
      el.appendChild(child);
    } else {
      el.appendChild(document.createTextNode(String(child)));
    }
  }
}

/** An HTML element: h("td", {class: "num", testid: "x"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Who acted: a principal id (`prn_…`), shown as the principal's name once the shell has
 * looked it up (app.js), the id kept as the tooltip; other actors (`system:…`) as they are. */
export function who(actor) {
  const id = String(actor ?? "—");
  return id.startsWith("prn_") ? h("span", { class: "who", "data-principal": id, title: id }, id) : id;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A figure shown with its exact value kept in data-value (for people copying and tests). */
export function figure(tag, testid, value, text, attrs) {
  return h(tag, { ...attrs, testid, "data-value": value === null || value === undefined ? "" : String(value) }, text);
}

// -- formatting -------------------------------------------------------------------------------

const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export const fmt = {
  int(n) {
    return n === null || n === undefined ? "—" : INT.format(n);
  },
  pct(x, digits = 2) {
    return x === null || x === undefined ? "—" : `${(x * 100).toFixed(digits)} %`;
  },
  ms(seconds) {
    return seconds === null || seconds === undefined ? "—" : `${(seconds * 1000).toFixed(1)} ms`;
  },
  num(x, digits = 3) {
    return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
  },
  seconds(x) {
    return x === null || x === undefined ? "—" : `${Number(x).toFixed(3)} s`;
  },
  time(value) {
    if (value === null || value === undefined || value === "") return "—";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  },
  clock(unixSeconds) {
    return new Date(unixSeconds * 1000).toISOString().slice(11, 16);
  },
  short(digest, n = 12) {
    if (!digest) return "—";
    const text = String(digest);
    const at = text.indexOf(":");
    return at >= 0 ? `${text.slice(0, at + 1)}${text.slice(at + 1, at + 1 + n)}…` : `${text.slice(0, n)}…`;
  },
};

export function badge(text, kind, testid) {
  return h("span", { class: ["badge", kind && `badge-${kind}`], testid }, text);
}

export function table(headers, rows, attrs) {
  return h(
    "table",
    attrs,
    h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", null, rows),
  );
}

export function section(title, attrs, ...children) {
  return h("section", { class: "panel", ...attrs }, h("h2", null, title), ...children);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}
