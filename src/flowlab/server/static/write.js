// A write task on the annotator page: the prompt (or conversation), guidance and reference material, and a text
// box where the annotator writes the response, with a Markdown preview, a live character count against the
// flow's limits, pasting blocked where the flow says so, and Ctrl+Enter to submit.
//
// Everything a task carries is data: it reaches the page through renderText and textContent only, never as
// HTML; the preview is markdown.js's DOM, never innerHTML.

import { el, renderText, taskActions } from "./render.js";

const ROLES = { system: "System", user: "User", assistant: "Assistant" };
const PREVIEW_MS = 120;

let views = 0; // numbers the views built on this page, for unique element ids

export class WriteView {
  constructor(task, options) {
    views += 1;
    this.id = `write${views}`;
    this.task = task;
    this.options = options;
    const w = task.write;
    this.min = w.min_chars ?? 1;
    this.max = w.max_chars ?? 4000;
    this.allowPaste = w.allow_paste ?? true;
    this.pasted = 0; // characters the page saw pasted in (sent with the answer; the server checks the rule)
    this.busy = false;
    this.blocked = false;
    this.previewTimer = 0;
    this.node = this.build();
    this.node.addEventListener("submit", (event) => event.preventDefault());
    this.update();
  }

  build() {
    const form = el("form", "rlhf-form write-form");
    form.noValidate = true;
    form.autocomplete = "off";
    form.setAttribute("aria-label", "Write the response");
    form.append(this.conversation());
    const w = this.task.write;
    if (w.guidance) form.append(this.aside("Guidance", w.guidance, "write-guidance"));
    if (w.reference) form.append(this.aside("Reference material", w.reference, "write-reference"));
    form.append(this.editor(), this.actions());
    return form;
  }

  conversation() {
    const box = el("section", "rlhf-conversation");
    this.heading = el("h2", "rlhf-heading", "Prompt");
    this.heading.id = `${this.id}-prompt`;
    this.heading.tabIndex = -1; // where focus goes when the task is shown
    box.setAttribute("aria-labelledby", this.heading.id);
    box.append(this.heading);
    for (const message of this.task.write.prompt || []) {
      const row = el("div", "rlhf-message");
      row.dataset.role = message.role;
      row.append(el("p", "rlhf-role", ROLES[message.role] || message.role));
      row.append(renderText(message.content, { markdown: this.options.markdown, className: "rlhf-content" }));
      box.append(row);
    }
    return box;
  }

  aside(title, text, className) {
    const box = el("section", `write-aside ${className}`);
    const heading = el("h3", "write-aside-title", title);
    heading.id = `${this.id}-${className}`;
    box.setAttribute("aria-labelledby", heading.id);
    box.append(heading, renderText(text, { markdown: this.options.markdown, className: "rlhf-content" }));
    return box;
  }

  editor() {
    const box = el("section", "write-editor");
    const label = el("label", "write-label", "Your response");
    label.htmlFor = `${this.id}-text`;
    this.text = el("textarea", "write-text");
    this.text.id = `${this.id}-text`;
    this.text.name = "text";
    this.text.rows = 10;
    this.text.spellcheck = true;
    this.text.setAttribute("aria-describedby", `${this.id}-count ${this.id}-rules`);
    this.text.addEventListener("input", () => this.update());
    this.text.addEventListener("paste", (event) => this.onPaste(event));
    this.text.addEventListener("drop", (event) => {
      if (!this.allowPaste) {
        event.preventDefault();
        this.say("Pasting and dropping text is off for this task: please write the response yourself.");
      }
    });
    const rules = el("p", "help write-rules");
    rules.id = `${this.id}-rules`;
    const limits = `${this.min.toLocaleString()} to ${this.max.toLocaleString()} characters`;
    rules.textContent = this.allowPaste
      ? `Write the response the assistant should give: ${limits}. Markdown is shown in the preview.`
      : `Write the response the assistant should give: ${limits}. Pasting is off for this task: type it yourself.`;
    this.count = el("p", "write-count");
    this.count.id = `${this.id}-count`;
    this.count.setAttribute("aria-live", "polite");
    this.problem = el("p", "rlhf-problems write-problem");
    this.problem.setAttribute("role", "alert");
    this.problem.hidden = true;
    const previewTitle = el("h3", "write-aside-title", "Preview");
    previewTitle.id = `${this.id}-preview-title`;
    this.preview = el("div", "write-preview");
    this.preview.setAttribute("aria-labelledby", previewTitle.id);
    this.preview.setAttribute("role", "region");
    this.preview.tabIndex = 0;
    const panes = el("div", "write-panes");
    const left = el("div", "write-pane");
    left.append(label, this.text, this.count);
    const right = el("div", "write-pane");
    right.append(previewTitle, this.preview);
    panes.append(left, right);
    box.append(rules, panes, this.problem);
    return box;
  }

  actions() {
    return taskActions(this);
  }

  onPaste(event) {
    if (!this.allowPaste) {
      event.preventDefault();
      this.say("Pasting is off for this task: please write the response yourself.");
      return;
    }
    const pasted = event.clipboardData?.getData("text") ?? "";
    this.pasted += pasted.length;
  }

  length() {
    return this.text.value.trim().length;
  }

  /** What is wrong with the text now, in the limits' words, or null. */
  problemNow() {
    const n = this.length();
    if (n === 0) return "Write a response first.";
    if (n < this.min) return `Write at least ${this.min.toLocaleString()} characters (${n.toLocaleString()} so far).`;
    if (n > this.max) return `Shorten it to at most ${this.max.toLocaleString()} characters (${n.toLocaleString()} now).`;
    return null;
  }

  update() {
    const n = this.length();
    this.count.textContent = `${n.toLocaleString()} / ${this.max.toLocaleString()} characters`
      + (n < this.min ? ` (at least ${this.min.toLocaleString()})` : "");
    this.count.dataset.state = n > this.max ? "over" : n < this.min ? "under" : "ok";
    if (!this.problem.hidden && this.problemNow() === null) this.problem.hidden = true;
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => this.renderPreview(), PREVIEW_MS);
  }

  renderPreview() {
    const text = this.text.value;
    if (!text.trim()) {
      this.preview.replaceChildren(el("p", "help", "Your formatted response shows here."));
      return;
    }
    this.preview.replaceChildren(renderText(text, { markdown: true, className: "rlhf-content" }));
  }

  say(text) {
    this.problem.textContent = text;
    this.problem.hidden = false;
  }

  trySubmit() {
    if (this.busy || this.blocked) return;
    const problem = this.problemNow();
    if (problem) {
      this.say(problem);
      this.text.focus();
      return;
    }
    const text = this.text.value.trim();
    this.options.submit({ text, pasted_chars: this.allowPaste ? Math.min(this.pasted, text.length) : 0 });
  }

  sending(on) {
    this.busy = on;
    this.submitButton.setAttribute("aria-disabled", String(on || this.blocked));
    this.submitLabel.textContent = on ? "Sending…" : "Submit";
  }

  /** The server did not take the response (or could not be reached): say why, keep the text, let them resend. */
  refused(detail) {
    this.sending(false);
    this.say(`Not sent: ${detail}`);
    this.text.focus();
  }

  block(on) {
    this.blocked = on;
    this.submitButton.setAttribute("aria-disabled", String(on || this.busy));
  }

  /** Keys while this task is on screen: only Ctrl+Enter (⌘+Enter), which submits. */
  onKey(event) {
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key === "Enter") {
      event.preventDefault();
      if (!event.repeat) this.trySubmit();
    }
  }

  /** Shown on screen: focus goes to the text box, so the annotator can start writing at once. */
  shown() {
    this.text.focus();
  }

  park() {
    return false; // a write task is not resumed after a reload
  }

  discard() {
    clearTimeout(this.previewTimer);
  }
}
