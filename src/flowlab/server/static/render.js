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

/** An element with a class and, if given, its text (as text, never HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A key's name as the page shows it beside a button (hidden from screen readers, which hear aria-keyshortcuts). */
export function kbd(text) {
  const node = el("kbd", "", text);
  node.setAttribute("aria-hidden", "true");
  return node;
}

/** The Submit and Skip bar of a task with a form (RLHF, write, listwise): Submit calls `view.trySubmit()`, Skip
 * `view.options.skip()` unless the view is busy; `extra` buttons stand between them. Sets `view.submitButton` and
 * `view.submitLabel`, which the views relabel while they send. */
export function taskActions(view, { shortcut = "Control+Enter Meta+Enter", hint = "Ctrl+Enter", extra = [] } = {}) {
  const bar = el("div", "rlhf-actions");
  view.submitButton = el("button", "primary rlhf-submit");
  view.submitButton.type = "button";
  view.submitButton.dataset.action = "submit";
  view.submitButton.setAttribute("aria-keyshortcuts", shortcut);
  view.submitLabel = el("span", "", "Submit");
  view.submitButton.append(view.submitLabel, kbd(hint));
  view.submitButton.addEventListener("click", () => view.trySubmit());
  const skip = el("button", "rlhf-skip", "Skip this task");
  skip.type = "button";
  skip.dataset.action = "skip";
  skip.addEventListener("click", () => {
    if (!view.busy) view.options.skip();
  });
  bar.append(view.submitButton, ...extra, skip);
  return bar;
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
      wrap.append(zoomButton(media, src));
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
    if (kind !== "image") wrap.append(media);
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

// ---------------------------------------------------------------- images at full size

let zoomDialog = null;

/**
 * The image inside a button that opens it at full size (a click, or Enter / Space once focused). A pane shows a
 * large image scaled down to fit; the button is no answer, whatever pane it sits in.
 */
function zoomButton(img, src) {
  const button = el("button", "zoom-open");
  button.type = "button";
  button.title = "Open at full size";
  button.setAttribute("aria-label", `${img.alt}: open at full size`);
  button.setAttribute("aria-haspopup", "dialog");
  button.addEventListener("click", (event) => {
    event.preventDefault();
    event.stopPropagation();
    openZoom(src, img.alt);
  });
  button.append(img);
  return button;
}

/**
 * Shows `src` at its own size in a modal dialog, scrolling where it is larger than the window. Escape, Close, a
 * click on the image or outside it close it, and focus goes back to the button that opened it.
 */
export function openZoom(src, alt = "Image") {
  if (!zoomDialog) zoomDialog = buildZoom();
  const img = zoomDialog.querySelector(".zoom-img");
  img.alt = alt;
  img.referrerPolicy = "no-referrer";
  if (img.getAttribute("src") !== src) img.src = src;
  zoomDialog.querySelector(".zoom-title").textContent = `${alt}, full size`;
  zoomDialog.showModal();
  zoomDialog.querySelector(".zoom-close").focus({ preventScroll: true });
  return zoomDialog;
}

function buildZoom() {
  const dialog = el("dialog", "zoom");
  dialog.id = "zoom";
  const bar = el("div", "zoom-bar");
  const title = el("p", "zoom-title");
  title.id = "zoom-title";
  dialog.setAttribute("aria-labelledby", title.id);
  const close = el("button", "zoom-close");
  close.type = "button";
  close.textContent = "Close";
  close.setAttribute("aria-keyshortcuts", "Escape");
  const hint = el("kbd");
  hint.textContent = "Esc";
  hint.setAttribute("aria-hidden", "true");
  close.append(hint);
  close.addEventListener("click", () => dialog.close());
  bar.append(title, close);
  const img = el("img", "zoom-img");
  img.decoding = "async";
  // A click on the image, or on the backdrop around the dialog, closes it; one on the bar (its title) does not.
  dialog.addEventListener("click", (event) => {
    if (event.target === img || event.target === dialog) dialog.close();
  });
  dialog.append(bar, img);
  document.body.append(dialog);
  return dialog;
}
