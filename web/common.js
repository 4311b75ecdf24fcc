// Shared by every console page: the API client, safe element building, formatting.


/** Component groups (src/component.rs), with words for people. */
export const COMPONENTS = [
  ["battery_12v", "12 V battery"],
  ["traction_battery", "traction battery"],
  ["brakes", "brakes"],
  ["tyres", "tyres"],
  ["cooling", "cooling system"],
  ["ignition", "ignition (misfire)"],
  ["emissions", "emissions (catalyst)"],
  ["oil", "engine oil"],
];

export const KEY_STORAGE = "aftercare.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body; // the whole answer, e.g. a 409's alternatives
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

/** Calls the API with the signed-in key; throws ApiError with the server's message. */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${apiKey() ?? ""}` };
  let body;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(path, { method: options.method ?? "GET", headers, body });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      throw new ApiError(response.status, "bad_response", `unreadable answer from ${path}`);
    }
  }
  if (!response.ok) {
    const err = data?.error ?? {};
    if (response.status === 401 && !options.allowUnauthorized) {
      window.dispatchEvent(new CustomEvent("aftercare:signout", { detail: "Your key was refused; sign in again." }));
    }
    throw new ApiError(response.status, err.code ?? "http_" + response.status,
      err.message ?? `${response.status} from ${path}`, data);
  }
  return data;
}

/** Builds an element; children are nodes or strings (always inserted as text, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 16) + "Z";
}

export function fmtDay(iso) {
  return iso ? String(iso).slice(0, 10) : "—";
}

export function fmtPct(p, digits = 0) {
  return p === null || p === undefined ? "—" : `${(p * 100).toFixed(digits)}%`;
}

export function fmtNum(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return Number(x).toLocaleString("en-GB", { maximumFractionDigits: digits });
}

/** A risk probability as a coloured badge. */
export function riskBadge(p) {
  const level = p >= 0.5 ? "high" : p >= 0.2 ? "medium" : "low";
  return el("span", { class: `badge risk-${level}`, "data-risk": p }, fmtPct(p));
}

export function toast(message, kind = "info") {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.className = kind;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (node.hidden = true), 5000);
}

export function errorBox(err) {
  return el("div", { class: "error", role: "alert" },
    err instanceof ApiError ? `${err.message} (${err.code})` : `Something went wrong: ${err.message ?? err}`);
}

/** Reads `#/route/arg?x=1` into its parts. */
export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

/** Changes the query of the current route without adding a history entry per keystroke. */
export function setParams(params) {
  const { parts } = parseHash();
  const q = params.toString();
  history.replaceState(null, "", `#/${parts.map(encodeURIComponent).join("/")}${q ? "?" + q : ""}`);
}


export function fmtMoney(cents) {
  return cents === null || cents === undefined ? "—"
    : (cents / 100).toLocaleString("en-GB", { style: "currency", currency: "EUR" });
}

/** A window's start in the workshop's local time, e.g. "Tue 24 Nov 09:30". */
export function fmtLocal(iso, timeZone) {
  const d = new Date(iso);
  try {
    return d.toLocaleString("en-GB", { timeZone, weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  } catch {
    return fmtTime(iso);
  }
}

/** Local calendar date (YYYY-MM-DD) and minutes since local midnight of an instant. */
export function localParts(iso, timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return { date: `${parts.year}-${parts.month}-${parts.day}`, minutes: Number(parts.hour) * 60 + Number(parts.minute) };
}
