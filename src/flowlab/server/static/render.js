// Turns a task's datapoints and context into DOM nodes. Content is data: text becomes text nodes,
// URLs become media elements (or a plain link for web pages), and nothing is ever parsed as HTML.

import { renderMarkdown } from "./markdown.js";

const MEDIA_PATH = /^\/media\/[0-9a-f]{64}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The URL to load media from, or null when it is not one the page will load: only http(s) URLs, and
 * on this server only content-addressed /media/<sha256> paths (never an API route, never javascript:).
 */
export function safeMediaUrl(url) {
  if (typeof url !== "string" || !url) return null;
  let parsed;
  try {
    parsed = new URL(url, window.location.origin);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  if (parsed.origin === window.location.origin && !MEDIA_PATH.test(parsed.pathname)) return null;
  if (parsed.username || parsed.password) return null;
  return parsed.href;
}

/** A datapoint or context asset's URL: `url` when given, else its uploaded file's /media/ path. */
function sourceOf(thing) {
  if (thing.url) return thing.url;
  if (typeof thing.media === "string" && SHA256.test(thing.media)) return `/media/${thing.media}`;
  return null;
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** Plain or Markdown text, as nodes. */
export function renderText(text, { markdown = false, className = "text" } = {}) {
  const box = el("div", markdown ? `${className} md` : className);
  if (markdown) box.append(renderMarkdown(text ?? ""));
  else box.textContent = text ?? "";
  return box;
}

function unavailable(what) {
  const box = el("p", "unavailable");
  box.textContent = what;
  return box;
}

/**
 * One datapoint (a DatapointView) or context asset (a ContextAsset) as a DOM node.
 * `label` names it for assistive technology, e.g. "A" or "context 1".
 */
export function renderContent(thing, { markdown = false, label = "" } = {}) {
  const kind = thing.kind;
  if (kind === "text") return renderText(thing.text, { markdown });
  const raw = sourceOf(thing);
  const src = safeMediaUrl(raw);
  if (kind === "image" || kind === "audio" || kind === "video") {
    if (!src) return unavailable(`This ${kind} cannot be shown: its address is not an http(s) media URL.`);
    const wrap = el("div", `media media-${kind}`);
    let media;
    if (kind === "image") {
      media = el("img");
      media.alt = label ? `Image ${label}` : "Image";
      media.decoding = "async";
    } else {
      media = el(kind);
      media.controls = true;
      media.preload = "auto";
      if (kind === "video") media.playsInline = true;
      media.setAttribute("aria-label", label ? `${kind === "audio" ? "Audio" : "Video"} ${label}` : kind);
    }
    media.referrerPolicy = "no-referrer";
    media.src = src;
    media.addEventListener("error", () => {
      wrap.classList.add("failed");
      wrap.dataset.error = `The ${kind} could not be loaded.`;
    }, { once: true });
    wrap.append(media);
    return wrap;
  }
  // A web page (kind "url"): shown as its address, with a link that opens it in a new tab.
  const box = el("div", "weblink");
  const text = el("p", "text");
  text.textContent = raw ?? "";
  box.append(text);
  if (src) {
    const a = el("a");
    a.href = src;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    a.textContent = "Open in a new tab";
    box.append(a);
  }
  return box;
}
