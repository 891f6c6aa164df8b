// A small Markdown renderer that builds DOM nodes; text only ever becomes text nodes, never HTML.
//
// It covers what model outputs use: headings, paragraphs, emphasis, inline and fenced code, lists,
// block quotes, rules and links. Raw HTML in the source stays visible as text. Links keep only
// http(s) and mailto targets; anything else (javascript:, data:, relative paths) is shown as text.

const SAFE_LINK = /^(https?:\/\/|mailto:)/i;

/** Render `source` into a DocumentFragment. */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  renderBlocks(lines, fragment);
  return fragment;
}

function renderBlocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+-]*)\s*$/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end of the text)
      const pre = el("pre");
      const code = el("code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.append(code);
      parent.append(pre);
      continue;
    }
    const heading = line.match(/^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/);
    if (heading) {
      // Datapoint headings sit inside a pane that already has an h2, so they start at h3.
      const level = Math.min(6, heading[1].length + 2);
      const h = el(`h${level}`);
      renderInline(heading[2], h);
      parent.append(h);
      i += 1;
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      parent.append(el("hr"));
      i += 1;
      continue;
    }
    if (/^\s{0,3}>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s{0,3}>/.test(lines[i])) {
        quoted.push(lines[i].replace(/^\s{0,3}>\s?/, ""));
        i += 1;
      }
      const q = el("blockquote");
      renderBlocks(quoted, q);
      parent.append(q);
      continue;
    }
    const bullet = /^\s{0,3}[-*+]\s+/;
    const numbered = /^\s{0,3}\d{1,9}[.)]\s+/;
    if (bullet.test(line) || numbered.test(line)) {
      const ordered = numbered.test(line);
      const marker = ordered ? numbered : bullet;
      const list = el(ordered ? "ol" : "ul");
      if (ordered) {
        const start = parseInt(line.trim(), 10);
        if (start !== 1) list.start = start;
      }
      while (i < lines.length && marker.test(lines[i])) {
        const itemLines = [lines[i].replace(marker, "")];
        i += 1;
        // Indented continuation lines belong to the item.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !marker.test(lines[i])) {
          itemLines.push(lines[i].trim());
          i += 1;
        }
        const li = el("li");
        renderInline(itemLines.join("\n"), li);
        list.append(li);
      }
      parent.append(list);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) {
      para.push(lines[i]);
      i += 1;
    }
    if (para.length === 0) {
      // A line that looks like a block opener but did not parse as one: keep it as text.
      para.push(lines[i]);
      i += 1;
    }
    const p = el("p");
    renderInline(para.join("\n"), p);
    parent.append(p);
  }
}

function startsBlock(line) {
  return /^\s*(```|~~~)/.test(line) || /^\s{0,3}#{1,6}\s/.test(line) || /^\s{0,3}>/.test(line)
    || /^\s{0,3}[-*+]\s+/.test(line) || /^\s{0,3}\d{1,9}[.)]\s+/.test(line);
}

// Inline spans, tried in this order where a special character starts; the first that matches wins.
// Sticky regexes match in place, so long texts are scanned once; spans are bounded so that an unclosed
// marker cannot make the scan quadratic.
const INLINE = [
  { re: /(`+)([^`][\s\S]{0,2000}?)\1(?!`)/y, make: (m) => textEl("code", m[2].trim() || m[2]) },
  { re: /!?\[([^\]\n]{0,500})\]\(\s*<?([^\s)>]{0,2000})>?(?:\s+"[^"\n]{0,200}")?\s*\)/y, make: link },
  { re: /(\*\*|(?<!\w)__)(?=\S)([\s\S]{0,2000}?\S)\1/y, make: (m) => nest("strong", m[2]) },
  { re: /\*(?=\S)([\s\S]{0,2000}?\S)\*(?!\*)/y, make: (m) => nest("em", m[1]) },
  // Underscores inside words (snake_case) are not emphasis.
  { re: /(?<!\w)_(?=\S)([\s\S]{0,2000}?\S)_(?!\w)/y, make: (m) => nest("em", m[1]) },
  { re: /~~(?=\S)([\s\S]{0,2000}?\S)~~/y, make: (m) => nest("del", m[1]) },
  { re: /<(https?:\/\/[^\s<>]{1,2000})>/y, make: (m) => anchor(m[1], m[1]) },
  { re: /\\([\\`*_{}[\]()#+\-.!~>|])/y, make: (m) => document.createTextNode(m[1]) },
];
const SPECIAL = new Set("`![*_~<\\");

function renderInline(text, parent) {
  let start = 0; // where the pending run of plain text begins
  let i = 0;
  while (i < text.length) {
    if (!SPECIAL.has(text[i])) {
      i += 1;
      continue;
    }
    let matched = null;
    for (const rule of INLINE) {
      rule.re.lastIndex = i;
      const m = rule.re.exec(text);
      if (m) {
        matched = { node: rule.make(m), end: i + m[0].length };
        break;
      }
    }
    if (!matched) {
      i += 1;
      continue;
    }
    if (i > start) parent.append(document.createTextNode(text.slice(start, i)));
    parent.append(matched.node);
    i = matched.end;
    start = i;
  }
  if (text.length > start) parent.append(document.createTextNode(text.slice(start)));
}

function link(m) {
  const [whole, label, target] = m;
  if (whole.startsWith("!")) {
    // Images inside Markdown are not loaded: media is shown only through the page's own media panes.
    return document.createTextNode(label ? `[image: ${label}]` : "[image]");
  }
  return SAFE_LINK.test(target) ? anchor(target, label) : document.createTextNode(whole);
}

function anchor(href, label) {
  const a = el("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  renderInline(label || href, a);
  return a;
}

function nest(tag, inner) {
  const node = el(tag);
  renderInline(inner, node);
  return node;
}

function textEl(tag, text) {
  const node = el(tag);
  node.textContent = text;
  return node;
}

function el(tag) {
  return document.createElement(tag);
}
