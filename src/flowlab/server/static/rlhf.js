// An RLHF task on the annotator page: the conversation, the responses side by side, a rating per dimension
// per response, optional rewrites with a word diff, then the better response, how much better and why.
//
// The server has already shuffled and anonymised the responses: they are only ever "Response 1", "Response 2", …
// in the order it sent them. Everything a task carries is data: it reaches the page through renderContent and
// renderText, textContent and form values only, never as HTML. What the annotator enters is kept as a draft in
// localStorage (by task id), so that a reload resumes the same task, lease and all, where they left it.

import { el, renderContent, renderText, taskActions } from "./render.js";

const DRAFT_PREFIX = "flowlab.rlhf.draft.";
const DRAFT_SAVE_MS = 300;
const DIFF_MS = 120;
const MAX_DIFF_CELLS = 1_000_000; // past this the changed middle of a rewrite shows as replaced whole
const SELECT_OVER = 6; // a category dimension with more options than this is a drop-down
const RESUME_MIN_MS = 2000; // a parked task with less lease left than this is not worth resuming
// As the server checks them (kinds/rlhf.py).
const MAX_JUSTIFICATION_CHARS = 10_000;
const MAX_TEXT_RATING_CHARS = 5_000;
const NA = "na"; // the form value of "Not applicable"

// The server leaves defaults out of a task's spec; these mirror schemas.RlhfSpec and schemas.Dimension.
const SPEC_DEFAULTS = {
  dimensions: [], rewrite: "optional", likert_scale: 7, justification: "required", justification_min_chars: 20,
  max_rewrite_chars: 20_000,
};
const DIMENSION_DEFAULTS = {
  label: "", description: "", type: "scale", min: 1, max: 5, anchors: [], options: [], allow_na: false,
  required: true,
};
const ROLES = { system: "System", user: "User", assistant: "Assistant" };
// How much better, from the strongest; the weakest step of a side is always "slightly better".
const STRENGTH = ["much better", "better", "somewhat better", "a little better"];
const BEFORE_SUBMIT = "Before you submit:";

let views = 0; // numbers the views built on this page, for unique element ids

// ---------------------------------------------------------------- small helpers

/** Text for screen readers only. */
function hidden(text) {
  return el("span", "sr-only", text);
}

/** Length in characters (code points), as the server counts them. */
function chars(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

function normalizeSpec(spec) {
  const out = { ...SPEC_DEFAULTS, ...spec };
  out.dimensions = (out.dimensions || []).map((d) => ({ ...DIMENSION_DEFAULTS, ...d }));
  return out;
}

function labelOf(dim) {
  return dim.label || dim.key;
}

/** The wording of Likert point `p` of `n`: 1 = "Response 1 much better" … n = "Response 2 much better". */
export function likertLabel(p, n) {
  const middle = (n + 1) / 2;
  if (p === middle) return "About the same";
  const side = p < middle ? "Response 1" : "Response 2";
  const step = p < middle ? p - 1 : n - p; // 0 at the ends
  const perSide = Math.floor(n / 2);
  const word = perSide === 1 ? STRENGTH[0] : step === perSide - 1 ? "slightly better" : STRENGTH[step];
  return `${side} ${word}`;
}

// ---------------------------------------------------------------- a word-level diff, as DOM text

function tokens(text) {
  return text.match(/\s+|\S+/g) ?? [];
}

function pushOp(ops, type, toks) {
  if (!toks.length) return;
  const text = toks.join("");
  const last = ops[ops.length - 1];
  if (last && last.type === type) last.text += text;
  else ops.push({ type, text });
}

/** The changed middle of a diff, by longest common subsequence over words (and the spaces between them). */
function diffMiddle(ops, x, y) {
  const n = x.length;
  const m = y.length;
  if (n * m > MAX_DIFF_CELLS) {
    pushOp(ops, "del", x);
    pushOp(ops, "ins", y);
    return;
  }
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w); // lcs[i * w + j]: of x[i..] and y[j..]
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      const here = i * w + j;
      lcs[here] = x[i] === y[j] ? lcs[here + w + 1] + 1 : Math.max(lcs[here + w], lcs[here + 1]);
    }
  }
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      pushOp(ops, "same", [x[i]]);
      i += 1;
      j += 1;
    } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
      pushOp(ops, "del", [x[i]]);
      i += 1;
    } else {
      pushOp(ops, "ins", [y[j]]);
      j += 1;
    }
  }
  pushOp(ops, "del", x.slice(i));
  pushOp(ops, "ins", y.slice(j));
}

// What both texts share between two changes, when it is only spaces, or a word of one or two characters ("a", "to",
// a comma) between two replacements, joins the change around it: otherwise a reworded sentence reads as struck and
// inserted words taking turns.
const WEAK_WORD = /^\s*\S{1,2}\s*$/;

/**
 * Each changed run as one deletion then one insertion. Runs are separated by what both texts share, except the
 * weak stretches above, which join the run around them as deleted and inserted (so both texts stay whole).
 */
function groupRuns(ops) {
  const parts = []; // changed runs {type: "run", del, ins} and shared stretches (the "same" ops)
  for (const op of ops) {
    const last = parts[parts.length - 1];
    if (op.type === "same") parts.push(op);
    else if (last?.type === "run") last[op.type] += op.text;
    else parts.push({ type: "run", del: "", ins: "", [op.type]: op.text });
  }
  const joined = [];
  parts.forEach((part, k) => {
    const prev = joined[joined.length - 1];
    const next = parts[k + 1];
    if (part.type === "run" && prev?.type === "run") {
      prev.del += part.del; // the run after a stretch that joined
      prev.ins += part.ins;
    } else if (part.type === "same" && prev?.type === "run" && next?.type === "run" && joins(part.text, prev, next)) {
      prev.del += part.text;
      prev.ins += part.text;
    } else {
      joined.push({ ...part });
    }
  });
  return joined.flatMap((p) => (p.type === "same" ? [p] : [
    ...(p.del ? [{ type: "del", text: p.del }] : []),
    ...(p.ins ? [{ type: "ins", text: p.ins }] : []),
  ]));
}

function joins(shared, before, after) {
  if (!/\S/.test(shared)) return true;
  return WEAK_WORD.test(shared) && Boolean(before.del && before.ins && after.del && after.ins);
}

/**
 * How `before` became `after`, word by word: [{type: "same" | "del" | "ins", text}], each changed run as one
 * deletion followed by one insertion.
 */
export function wordDiff(before, after) {
  const x = tokens(before);
  const y = tokens(after);
  // Edits are usually local: only what lies between the common start and end needs the quadratic part.
  let start = 0;
  while (start < x.length && start < y.length && x[start] === y[start]) start += 1;
  let endX = x.length;
  let endY = y.length;
  while (endX > start && endY > start && x[endX - 1] === y[endY - 1]) {
    endX -= 1;
    endY -= 1;
  }
  const ops = [];
  pushOp(ops, "same", x.slice(0, start));
  diffMiddle(ops, x.slice(start, endX), y.slice(start, endY));
  pushOp(ops, "same", x.slice(endX));
  return groupRuns(ops);
}

function words(text) {
  return text.split(/\s+/).filter(Boolean).length;
}

// ---------------------------------------------------------------- drafts

function draftKey(taskId) {
  return DRAFT_PREFIX + taskId;
}

function draftKeys() {
  const keys = [];
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (key?.startsWith(DRAFT_PREFIX)) keys.push(key);
    }
  } catch {
    // storage disabled: no drafts
  }
  return keys;
}

function readDraft(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}

function writeDraft(taskId, draft) {
  try {
    localStorage.setItem(draftKey(taskId), JSON.stringify(draft));
  } catch {
    // full or disabled: a draft is a convenience, the form itself still works
  }
}

function dropDraft(key) {
  try {
    localStorage.removeItem(key);
  } catch {
    // storage disabled
  }
}

/**
 * The task this annotator was in the middle of when the page last closed (see `RlhfView.park`), if its lease
 * still runs: `{task, receivedAt, form}`, or null. Drafts whose lease has run out are forgotten on the way.
 */
export function takeParked(owner, now = Date.now()) {
  let best = null;
  for (const key of draftKeys()) {
    const draft = readDraft(key);
    if (!draft || !(draft.deadline > now)) {
      dropDraft(key);
    } else if (draft.parked && draft.owner === owner && draft.deadline - now > RESUME_MIN_MS
      && (!best || draft.savedAt > best.savedAt)) {
      best = draft;
    }
  }
  return best;
}

// ---------------------------------------------------------------- the form

/**
 * One RLHF task, rendered off-screen until shown. `options`: `markdown`; `owner` (the annotator's id),
 * `receivedAt` and `deadline` (kept with the draft); `form` (a draft's form to restore); `submit(annotation)`
 * and `skip()`, called when the annotator sends it.
 */
export class RlhfView {
  constructor(task, options) {
    views += 1;
    this.id = `rlhf${views}`;
    this.task = task;
    this.options = options;
    this.spec = normalizeSpec(task.rlhf.spec);
    this.responses = task.rlhf.responses;
    this.asksLikert = this.spec.likert_scale > 0 && this.responses.length === 2;
    this.rewriting = this.responses.map(() => false);
    this.rewrites = []; // per text response: its editor's parts
    this.syncs = []; // re-applied after a draft is restored (a "not applicable" box disables its text)
    this.busy = false;
    this.blocked = false;
    this.touched = false; // something was entered: worth a draft
    this.discarded = false;
    this.shownProblems = null; // the list on screen, while it shrinks as problems are fixed
    this.saveTimer = 0;
    this.node = this.build();
    this.node.addEventListener("input", () => this.changed());
    this.node.addEventListener("change", () => this.changed());
    // Enter on a radio button submits a form natively; here only Submit and Ctrl+Enter send.
    this.node.addEventListener("submit", (event) => event.preventDefault());
    if (options.form) this.restore(options.form);
    this.updateCounts();
  }

  build() {
    const form = el("form", "rlhf-form");
    form.noValidate = true;
    form.autocomplete = "off";
    form.setAttribute("aria-label", "Annotate the responses");
    form.append(this.conversation());
    // The flow's instruction is shown above the form (annotate.js); this says only what it may leave out.
    const instructionShown = Boolean(this.task.instruction) && (this.task.settings || {}).no_aux_text !== "true";
    const howto = instructionShown ? [] : ["Rate each response on every question, then choose the better one."];
    if (this.spec.rewrite === "required") howto.push("Rewrite the response you choose (its Rewrite button).");
    else if (this.spec.rewrite === "optional") howto.push("You may rewrite any response to improve it.");
    if (howto.length) form.append(el("p", "rlhf-howto", howto.join(" ")));
    const responses = el("div", "rlhf-responses");
    responses.dataset.count = String(this.responses.length);
    responses.append(...this.responses.map((_, j) => this.responseCard(j)));
    this.problemsBox = el("div", "rlhf-problems");
    this.problemsBox.setAttribute("role", "alert");
    this.problemsBox.hidden = true;
    form.append(responses, this.verdict(), this.problemsBox, this.actions());
    return form;
  }

  conversation() {
    const box = el("section", "rlhf-conversation");
    this.heading = el("h2", "rlhf-heading", "Conversation");
    this.heading.id = `${this.id}-conversation`;
    this.heading.tabIndex = -1; // where focus goes when the task is shown
    box.setAttribute("aria-labelledby", this.heading.id);
    box.append(this.heading);
    const messages = this.task.rlhf.prompt || [];
    for (const message of messages) {
      const row = el("div", "rlhf-message");
      row.dataset.role = message.role;
      row.append(el("p", "rlhf-role", ROLES[message.role] || message.role));
      row.append(renderText(message.content, { markdown: this.options.markdown, className: "rlhf-content" }));
      box.append(row);
    }
    if (!messages.length) box.append(el("p", "help", "No conversation: rate the responses on their own."));
    return box;
  }

  responseCard(j) {
    const card = el("section", "rlhf-response");
    const name = `Response ${j + 1}`;
    const title = el("h3", "rlhf-response-title");
    title.id = `${this.id}-r${j}`;
    title.append(el("span", "badge", name));
    card.setAttribute("aria-labelledby", title.id);
    const body = el("div", "rlhf-response-body pane-body");
    body.tabIndex = 0; // long responses scroll by keyboard too
    body.setAttribute("role", "region");
    body.setAttribute("aria-label", `${name}, the text`);
    body.append(renderContent(this.responses[j], { markdown: this.options.markdown, label: name }));
    card.append(title, body);
    this.spec.dimensions.forEach((dim, d) => card.append(this.rating(j, d, dim)));
    if (this.spec.rewrite !== "off" && this.responses[j].kind === "text") card.append(this.rewriteEditor(j));
    return card;
  }

  // ------------------------------------------------------------ ratings

  rating(j, d, dim) {
    const name = `r${j}:${d}`;
    const box = el("fieldset", "rlhf-field rlhf-dim");
    box.dataset.name = name;
    box.dataset.type = dim.type;
    const legend = el("legend");
    legend.id = `${this.id}-${name}-legend`;
    legend.append(hidden(`Response ${j + 1}: `), labelOf(dim));
    if (!dim.required) legend.append(el("span", "rlhf-optional", " (optional)"));
    box.append(legend);
    if (dim.description) {
      const help = el("p", "rlhf-help", dim.description);
      help.id = `${this.id}-${name}-help`;
      box.setAttribute("aria-describedby", help.id);
      box.append(help);
    }
    if (dim.type === "text") box.append(this.textRating(name, dim, legend.id));
    else if (dim.type === "category" && dim.options.length > SELECT_OVER) box.append(this.select(name, dim, legend.id));
    else box.append(this.radios(name, choicesOf(dim), dim.allow_na));
    return box;
  }

  radios(name, choices, allowNa) {
    const row = el("div", "rlhf-options");
    for (const c of choices) row.append(option(name, c.value, c.text, c.hint));
    if (allowNa) row.append(option(name, NA, "Not applicable", "", "na"));
    return row;
  }

  select(name, dim, labelledBy) {
    const select = el("select", "rlhf-select");
    select.name = name;
    select.setAttribute("aria-labelledby", labelledBy);
    select.append(new Option("Choose…", ""));
    for (const c of choicesOf(dim)) select.append(new Option(c.text, c.value));
    if (dim.allow_na) select.append(new Option("Not applicable", NA));
    return select;
  }

  textRating(name, dim, labelledBy) {
    const wrap = el("div", "rlhf-text-rating");
    const area = el("textarea", "rlhf-textarea");
    area.name = name;
    area.rows = 3;
    area.setAttribute("aria-labelledby", labelledBy);
    wrap.append(area);
    if (dim.allow_na) {
      const label = el("label", "rlhf-opt na");
      const box = el("input");
      box.type = "checkbox";
      box.name = `${name}:na`;
      label.append(box, el("span", "rlhf-opt-text", "Not applicable"));
      const sync = () => {
        area.disabled = box.checked;
      };
      box.addEventListener("change", sync);
      this.syncs.push(sync);
      wrap.append(label);
    }
    return wrap;
  }

  /** Response j's answer to dimension d: undefined (none), null (not applicable) or the value. */
  ratingValue(j, d, dim) {
    const name = `r${j}:${d}`;
    if (dim.type === "text") {
      if (dim.allow_na && this.field(`${name}:na`).checked) return null;
      const text = this.field(name).value;
      return text.trim() ? text : undefined;
    }
    const value = this.field(name).value; // a radio group's or a select's; "" while none is chosen
    if (value === "") return undefined;
    if (value === NA) return null;
    if (dim.type === "scale") return Number(value);
    if (dim.type === "boolean") return value === "true";
    return dim.options[Number(value)];
  }

  // ------------------------------------------------------------ rewrites

  rewriteEditor(j) {
    const name = `Response ${j + 1}`;
    const original = this.responses[j].text ?? "";
    const box = el("div", "rlhf-field rlhf-rewrite");
    box.dataset.name = `w${j}`;
    const toggle = el("button", "rlhf-rewrite-toggle", `Rewrite ${name}`);
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    const editor = el("div", "rlhf-rewrite-editor");
    editor.id = `${this.id}-w${j}`;
    editor.hidden = true;
    toggle.setAttribute("aria-controls", editor.id);
    const label = el("label", "rlhf-label", `Your rewrite of ${name}`);
    const area = el("textarea", "rlhf-textarea");
    area.id = `${this.id}-w${j}-text`;
    area.name = `w${j}`;
    area.rows = 8;
    area.value = original;
    area.dataset.rewrite = String(j);
    label.htmlFor = area.id;
    const count = el("p", "rlhf-count");
    count.id = `${area.id}-count`;
    area.setAttribute("aria-describedby", count.id);
    const summary = el("p", "rlhf-diff-summary");
    const diff = el("div", "rlhf-diff");
    diff.setAttribute("aria-label", `Changes to ${name}`);
    editor.append(label, area, count, summary, diff);
    box.append(toggle, editor);
    const parts = { toggle, editor, area, count, summary, diff, original, timer: 0 };
    this.rewrites[j] = parts;
    toggle.addEventListener("click", () => this.setRewriting(j, !this.rewriting[j], { focus: true }));
    area.addEventListener("input", () => {
      clearTimeout(parts.timer);
      parts.timer = setTimeout(() => this.renderDiff(j), DIFF_MS);
    });
    return box;
  }

  setRewriting(j, on, { focus = false } = {}) {
    const parts = this.rewrites[j];
    const name = `Response ${j + 1}`;
    this.rewriting[j] = on;
    parts.editor.hidden = !on;
    parts.toggle.setAttribute("aria-expanded", String(on));
    parts.toggle.textContent = on ? `Discard the rewrite of ${name}` : `Rewrite ${name}`;
    if (!on) parts.area.value = parts.original; // discarded: the next rewrite starts from the response again
    this.renderDiff(j);
    if (on && focus) {
      parts.area.focus();
      parts.area.setSelectionRange(parts.area.value.length, parts.area.value.length);
    }
    this.changed();
  }

  renderDiff(j) {
    const parts = this.rewrites[j];
    clearTimeout(parts.timer);
    const text = parts.area.value;
    parts.count.textContent = `${chars(text).toLocaleString()} characters (at most `
      + `${this.spec.max_rewrite_chars.toLocaleString()})`;
    if (!this.rewriting[j]) {
      parts.diff.replaceChildren();
      return;
    }
    let added = 0;
    let removed = 0;
    const nodes = wordDiff(parts.original, text).map((op) => {
      if (op.type === "same") return document.createTextNode(op.text);
      if (op.type === "ins") added += words(op.text);
      else removed += words(op.text);
      return el(op.type, "", op.text);
    });
    parts.diff.replaceChildren(...nodes);
    parts.summary.textContent = added || removed
      ? `Changes: ${added} word${added === 1 ? "" : "s"} added, ${removed} removed`
      : "No changes yet: edit the text above.";
  }

  /** Response j's rewrite, or null: not rewritten (an empty or unchanged text is no rewrite). */
  rewriteText(j) {
    const parts = this.rewrites[j];
    if (!parts || !this.rewriting[j]) return null;
    const text = parts.area.value;
    return text.trim() && text !== parts.original ? text : null;
  }

  // ------------------------------------------------------------ the verdict: better, how much, why

  verdict() {
    const section = el("section", "rlhf-verdict");
    const title = el("h3", "rlhf-verdict-title", "Your verdict");
    title.id = `${this.id}-verdict`;
    section.setAttribute("aria-labelledby", title.id);
    section.append(title);

    const choose = el("fieldset", "rlhf-field");
    choose.dataset.name = "sel";
    choose.append(el("legend", "", "Which response is better?"));
    choose.append(this.radios("sel", this.responses.map((_, j) => ({ value: String(j), text: `Response ${j + 1}` }))));
    section.append(choose);

    if (this.asksLikert) {
      const n = this.spec.likert_scale;
      const strength = el("fieldset", "rlhf-field rlhf-likert");
      strength.dataset.name = "lk";
      strength.append(el("legend", "", "How much better?"));
      const points = [];
      for (let p = 1; p <= n; p += 1) points.push({ value: String(p), text: String(p), hint: likertLabel(p, n) });
      strength.append(this.radios("lk", points));
      section.append(strength);
    }

    if (this.spec.justification !== "off") {
      const box = el("div", "rlhf-field rlhf-why");
      box.dataset.name = "why";
      const min = this.spec.justification_min_chars;
      const need = this.spec.justification === "required"
        ? ` (required${min > 0 ? `, at least ${min} characters` : ""})` : " (optional)";
      const label = el("label", "rlhf-label", `Why? Justify your choice${need}`);
      const area = el("textarea", "rlhf-textarea");
      area.id = `${this.id}-why`;
      area.name = "why";
      area.rows = 4;
      label.htmlFor = area.id;
      this.whyCount = el("p", "rlhf-count");
      this.whyCount.id = `${area.id}-count`;
      area.setAttribute("aria-describedby", this.whyCount.id);
      box.append(label, area, this.whyCount);
      section.append(box);
    }
    return section;
  }

  actions() {
    return taskActions(this);
  }

  selectedIndex() {
    const value = this.field("sel").value;
    return value === "" ? null : Number(value);
  }

  likertValue() {
    const value = this.asksLikert ? this.field("lk").value : "";
    return value === "" ? null : Number(value);
  }

  justificationText() {
    return this.spec.justification === "off" ? "" : this.field("why").value.trim();
  }

  updateCounts() {
    if (!this.whyCount) return;
    const n = chars(this.justificationText());
    const min = this.spec.justification_min_chars;
    const required = this.spec.justification === "required";
    this.whyCount.textContent = required && min > 0
      ? `${n.toLocaleString()} of at least ${min.toLocaleString()} characters`
      : `${n.toLocaleString()} characters`;
    this.whyCount.dataset.ok = String(!required || n >= Math.max(1, min));
  }

  // ------------------------------------------------------------ checking and sending

  field(name) {
    return this.node.elements.namedItem(name);
  }

  /** What the server would refuse (kinds/rlhf.py `check_answer`), in the order of the form: [{text, name}]. */
  problems() {
    const out = [];
    this.responses.forEach((_, j) => {
      this.spec.dimensions.forEach((dim, d) => {
        const value = this.ratingValue(j, d, dim);
        const name = `r${j}:${d}`;
        if (value === undefined && dim.required) {
          out.push({ name, text: `Response ${j + 1}: ${dim.type === "text" ? "fill in" : "rate"} ${labelOf(dim)}` });
        } else if (typeof value === "string" && dim.type === "text" && chars(value) > MAX_TEXT_RATING_CHARS) {
          const most = MAX_TEXT_RATING_CHARS.toLocaleString();
          out.push({ name, text: `Response ${j + 1}: ${labelOf(dim)} holds at most ${most} characters` });
        }
      });
      const rewrite = this.rewriteText(j);
      if (rewrite !== null && chars(rewrite) > this.spec.max_rewrite_chars) {
        out.push({
          name: `w${j}`,
          text: `Response ${j + 1}: a rewrite holds at most ${this.spec.max_rewrite_chars.toLocaleString()} characters`,
        });
      }
    });
    const selected = this.selectedIndex();
    if (selected === null) {
      out.push({ name: "sel", text: "Choose the better response" });
    } else if (this.spec.rewrite === "required" && this.rewriteText(selected) === null) {
      out.push({
        name: this.rewrites[selected] ? `w${selected}` : "sel",
        text: this.rewrites[selected]
          ? `Response ${selected + 1}: rewrite it (this task needs a rewrite of the response you choose)`
          : `Response ${selected + 1} cannot be rewritten here, but this task needs a rewrite of the one you choose`,
      });
    }
    if (this.asksLikert) {
      const likert = this.likertValue();
      const middle = (this.spec.likert_scale + 1) / 2;
      if (likert === null) {
        out.push({ name: "lk", text: "Say how much better (1 to " + this.spec.likert_scale + ")" });
      } else if ((selected === 0 && likert > middle) || (selected === 1 && likert < middle)) {
        out.push({
          name: "lk",
          text: `How much better: “${likertLabel(likert, this.spec.likert_scale)}” does not fit choosing `
            + `Response ${selected + 1}`,
        });
      }
    }
    if (this.spec.justification !== "off") {
      const n = chars(this.justificationText());
      const min = this.spec.justification_min_chars;
      if (this.spec.justification === "required" && n < Math.max(1, min)) {
        const text = min > 1 ? `Justification: at least ${min} characters` : "Justification: say why";
        out.push({ name: "why", text });
      } else if (n > MAX_JUSTIFICATION_CHARS) {
        const most = MAX_JUSTIFICATION_CHARS.toLocaleString();
        out.push({ name: "why", text: `Justification: at most ${most} characters` });
      }
    }
    return out;
  }

  /** The annotation as the server takes it (schemas.RlhfAnswer): responses by their position as shown. */
  collect() {
    const annotation = {
      ratings: this.responses.map((_, j) => {
        const given = {};
        this.spec.dimensions.forEach((dim, d) => {
          const value = this.ratingValue(j, d, dim);
          if (value !== undefined) given[dim.key] = value;
        });
        return given;
      }),
      selected: this.selectedIndex(),
    };
    if (this.spec.rewrite !== "off") annotation.rewrites = this.responses.map((_, j) => this.rewriteText(j));
    if (this.asksLikert) annotation.likert = this.likertValue();
    if (this.spec.justification !== "off") annotation.justification = this.justificationText() || null;
    return annotation;
  }

  trySubmit() {
    if (this.busy || this.blocked) return;
    const problems = this.problems();
    if (problems.length) {
      this.showProblems(problems, BEFORE_SUBMIT);
      this.focus(problems[0].name);
      return;
    }
    this.hideProblems();
    this.options.submit(this.collect());
  }

  /** The control to fix for a problem named `name`. */
  target(name) {
    const j = /^w(\d+)$/.exec(name ?? "")?.[1];
    if (j !== undefined && this.rewrites[j] && !this.rewriting[j]) return this.rewrites[j].toggle;
    const item = name ? this.field(name) : null;
    if (item instanceof RadioNodeList) return [...item].find((r) => r.checked) ?? item[0];
    return item && !item.disabled ? item : null;
  }

  focus(name) {
    const target = this.target(name) ?? this.problemsBox;
    target.focus({ preventScroll: true });
    target.scrollIntoView({ block: "center" });
  }

  showProblems(problems, heading, { live = true } = {}) {
    this.shownProblems = live ? problems : null;
    for (const box of this.node.querySelectorAll(".rlhf-field.invalid")) box.classList.remove("invalid");
    const list = el("ul");
    for (const problem of problems) {
      const item = el("li");
      item.dataset.text = problem.text;
      const go = el("button", "link-button", problem.text);
      go.type = "button";
      go.addEventListener("click", () => this.focus(problem.name));
      item.append(go);
      list.append(item);
      this.fieldBox(problem.name)?.classList.add("invalid");
    }
    this.problemsBox.replaceChildren(el("p", "rlhf-problems-title", heading), list);
    this.problemsBox.tabIndex = -1;
    this.problemsBox.hidden = false;
  }

  hideProblems() {
    this.shownProblems = null;
    this.problemsBox.hidden = true;
    this.problemsBox.replaceChildren();
    for (const box of this.node.querySelectorAll(".rlhf-field.invalid")) box.classList.remove("invalid");
  }

  /** While a list is on screen, what gets fixed leaves it (nothing is added: that waits for the next submit). */
  recheck() {
    if (!this.shownProblems) return;
    const now = new Set(this.problems().map((p) => p.text));
    const left = this.shownProblems.filter((p) => now.has(p.text));
    if (!left.length) {
      this.hideProblems();
      return;
    }
    for (const item of this.problemsBox.querySelectorAll("li")) {
      if (!now.has(item.dataset.text)) item.remove();
    }
    for (const p of this.shownProblems) if (!now.has(p.text)) this.fieldBox(p.name)?.classList.remove("invalid");
    this.shownProblems = left;
  }

  fieldBox(name) {
    return name ? this.node.querySelector(`.rlhf-field[data-name="${CSS.escape(name)}"]`) : null;
  }

  /** The server's field ("rlhf.ratings[1].truthfulness") as this form names it ("r1:1"). */
  nameOfField(field) {
    const path = String(field || "").replace(/^rlhf\.?/, "");
    const rating = /^ratings\[(\d+)\](?:\.(.+))?$/.exec(path);
    if (rating) {
      const d = rating[2] === undefined ? 0 : this.spec.dimensions.findIndex((dim) => dim.key === rating[2]);
      return d >= 0 ? `r${rating[1]}:${d}` : null;
    }
    const rewrite = /^rewrites\[(\d+)\]$/.exec(path);
    if (rewrite) return `w${rewrite[1]}`;
    return { selected: "sel", likert: "lk", justification: "why" }[path] ?? null;
  }

  /** The annotation is on its way (`on`), or came back: Submit waits meanwhile. */
  sending(on) {
    this.busy = on;
    this.submitButton.setAttribute("aria-disabled", String(on || this.blocked));
    this.submitLabel.textContent = on ? "Sending…" : "Submit";
  }

  /** The server did not take the annotation (or could not be reached): say why, keep the form, let them resend. */
  refused(detail, field) {
    this.sending(false);
    const name = this.nameOfField(field);
    this.showProblems([{ text: detail, name }], "Not sent: fix this, then submit again.", { live: false });
    this.focus(name);
  }

  block(on) {
    this.blocked = on;
    this.submitButton.setAttribute("aria-disabled", String(on || this.busy));
  }

  /** Keys while this form is on screen: only Ctrl+Enter (⌘+Enter), which submits. */
  onKey(event) {
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key === "Enter") {
      event.preventDefault();
      if (!event.repeat) this.trySubmit();
    }
  }

  /** Shown on screen: focus goes to the top, so Tab walks the form from the conversation down. */
  shown() {
    this.heading.focus();
  }

  changed() {
    if (this.discarded) return;
    this.touched = true;
    this.updateCounts();
    this.recheck();
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.saveDraft(), DRAFT_SAVE_MS);
  }

  // ------------------------------------------------------------ drafts

  snapshot() {
    const fields = {};
    for (const c of this.node.elements) {
      if (!c.name) continue;
      if (c.dataset.rewrite !== undefined && !this.rewriting[Number(c.dataset.rewrite)]) continue;
      if (c.type === "radio") {
        if (c.checked) fields[c.name] = c.value;
      } else if (c.type === "checkbox") {
        if (c.checked) fields[c.name] = true;
      } else if (c.value !== "") {
        fields[c.name] = c.value;
      }
    }
    return { fields, rewriting: [...this.rewriting] };
  }

  restore({ fields = {}, rewriting = [] }) {
    for (const [name, value] of Object.entries(fields)) {
      const item = this.field(name);
      if (!item) continue;
      if (item instanceof RadioNodeList) item.value = String(value);
      else if (item.type === "checkbox") item.checked = value === true;
      else item.value = String(value);
    }
    for (const sync of this.syncs) sync();
    rewriting.forEach((on, j) => {
      if (on && this.rewrites[j]) {
        this.rewriting[j] = true;
        this.rewrites[j].editor.hidden = false;
        this.rewrites[j].toggle.setAttribute("aria-expanded", "true");
        this.rewrites[j].toggle.textContent = `Discard the rewrite of Response ${j + 1}`;
        this.renderDiff(j);
      }
    });
    this.touched = true;
    this.updateCounts();
  }

  saveDraft(parked = false) {
    clearTimeout(this.saveTimer);
    if (this.discarded || !this.touched) return;
    const { owner, receivedAt, deadline } = this.options;
    writeDraft(this.task.task_id, {
      owner, receivedAt, deadline, parked, savedAt: Date.now(), task: this.task, form: this.snapshot(),
    });
  }

  /** The page is closing mid-annotation: keep the draft for its next load. False when nothing was entered. */
  park() {
    if (!this.touched || this.discarded) return false;
    this.saveDraft(true);
    return true;
  }

  /** The task is done with (answered, skipped, refused or handed back): its draft goes. */
  discard() {
    clearTimeout(this.saveTimer);
    this.discarded = true;
    dropDraft(draftKey(this.task.task_id));
  }
}

/** The radio choices of a scale, yes/no or category dimension: [{value, text, hint}]. */
function choicesOf(dim) {
  if (dim.type === "boolean") return [{ value: "true", text: "Yes" }, { value: "false", text: "No" }];
  if (dim.type === "category") return dim.options.map((o, i) => ({ value: String(i), text: o }));
  const points = dim.max - dim.min + 1;
  const anchors = dim.anchors || [];
  const out = [];
  for (let i = 0; i < points; i += 1) {
    let hint = "";
    if (anchors.length === points) hint = anchors[i];
    else if (anchors.length === 2 && i === 0) hint = anchors[0];
    else if (anchors.length === 2 && i === points - 1) hint = anchors[1];
    out.push({ value: String(dim.min + i), text: String(dim.min + i), hint });
  }
  return out;
}

function option(name, value, text, hint = "", extra = "") {
  const label = el("label", extra ? `rlhf-opt ${extra}` : "rlhf-opt");
  const input = el("input");
  input.type = "radio";
  input.name = name;
  input.value = value;
  label.append(input, el("span", "rlhf-opt-text", text));
  if (hint) label.append(el("span", "rlhf-anchor", hint));
  return label;
}
