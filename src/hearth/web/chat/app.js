// hearth web chat. No framework, no build step, nothing from elsewhere: served by hearth itself.
//
// Text from the model, from users and from the server is only ever put into the page with textContent or
// as text nodes (the Markdown renderer below builds elements one by one); there is no innerHTML here, and
// the page's Content-Security-Policy forbids inline script besides.
//
// Talks to hearth over:
//   GET /v1/conversations, GET /v1/conversations/{id}/messages, PATCH/DELETE /v1/conversations/{id}
//   POST /v1/files (attachments)
//   /ws: {"type":"auth"} then "message" frames; "ack", "delta", "done", "error", "notice" come back.

const KEY_NAME = "hearth.apiKey";
const PAGE_SIZE = 50;
const PING_EVERY = 25000;
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 15000;

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  user: "",
  conversations: [],     // from GET /v1/conversations, newest first
  moreConversations: false,
  current: null,         // the conversation on screen; null for a new one
  firstShownId: null,    // cursor for "show earlier messages"
  pending: new Map(),    // client id -> entry: messages sent and not yet answered
  socket: null,
  ready: false,
  attempt: 0,
  reconnectTimer: null,
  pingTimer: null,
  chips: [],             // files attached to the message being written
  unread: new Set(),
  loadToken: 0,
};

// --- small DOM helpers ----------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);  // unlike randomUUID, also there on plain http to a LAN address
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function when(seconds) {
  if (!seconds) return "";
  const date = new Date(seconds * 1000);
  const ago = (Date.now() - date.getTime()) / 1000;
  if (ago < 60) return "just now";
  if (ago < 3600) return `${Math.floor(ago / 60)} min ago`;
  const today = new Date();
  if (date.toDateString() === today.toDateString()) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return date.toLocaleDateString([], { day: "numeric", month: "short", year: date.getFullYear() === today.getFullYear() ? undefined : "numeric" });
}

function setStatus(text) {
  $("status").textContent = text;
}

// --- Markdown, rendered safely ----------------------------------------------------------------------------
// Blocks: paragraphs, headings, fenced code, quotes, lists (nested by indentation), rules.
// Inline: code, bold, italic, strikethrough, links, bare URLs, backslash escapes.
// Links keep only http, https and mailto addresses; anything else stays visible as plain text.

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const BULLET = /^(\s*)([-*+])\s+(.*)$/;
const NUMBERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;

function closesFence(line, fence) {
  const trimmed = line.trim();
  return trimmed.length >= fence.length && trimmed === fence[0].repeat(trimmed.length);
}

function isBlockStart(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || BULLET.test(line)
    || NUMBERED.test(line);
}

export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  renderBlocks(String(text).replace(/\r\n?/g, "\n").split("\n"), fragment, 0);
  return fragment;
}

function renderBlocks(lines, parent, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    let match;
    if ((match = FENCE.exec(line))) {
      const fence = match[1];
      const code = [];
      i += 1;
      while (i < lines.length && !closesFence(lines[i], fence)) {
        code.push(lines[i]);
        i += 1;
      }
      i += 1;  // the closing fence (or the end: a reply still being written)
      const codeNode = el("code", { text: code.join("\n") });
      if (match[2]) codeNode.dataset.lang = match[2];
      parent.append(el("pre", {}, codeNode));
      continue;
    }
    if ((match = HEADING.exec(line))) {
      const level = Math.min(6, match[1].length + 2);
      parent.append(renderInline(match[2], el(`h${level}`)));
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(el("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && lines[i].trim() && QUOTE.test(lines[i])) {
        inner.push(QUOTE.exec(lines[i])[1]);
        i += 1;
      }
      const quote = el("blockquote");
      if (depth < 8) renderBlocks(inner, quote, depth + 1);
      else quote.textContent = inner.join("\n");
      parent.append(quote);
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      i = renderList(lines, i, parent, depth);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && (paragraph.length === 0 || !isBlockStart(lines[i]))) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    const p = el("p");
    paragraph.forEach((text, index) => {
      if (index > 0) p.append(el("br"));
      renderInline(text, p);
    });
    parent.append(p);
  }
}

function renderList(lines, start, parent, depth) {
  const first = BULLET.exec(lines[start]) || NUMBERED.exec(lines[start]);
  const ordered = !BULLET.test(lines[start]);
  const indent = first[1].length;
  const list = el(ordered ? "ol" : "ul");
  if (ordered && first[2] !== "1") list.setAttribute("start", String(parseInt(first[2], 10)));
  const pattern = ordered ? NUMBERED : BULLET;
  let i = start;
  while (i < lines.length) {
    const item = pattern.exec(lines[i]);
    if (!item || item[1].length !== indent) break;
    const body = [item[3]];
    i += 1;
    // the item goes on while lines are indented deeper than its marker (or are blank between such lines)
    while (i < lines.length) {
      const next = lines[i];
      const nextIndent = next.length - next.trimStart().length;
      if (next.trim() && nextIndent > indent) { body.push(next.slice(Math.min(nextIndent, indent + 2))); i += 1; continue; }
      if (!next.trim() && i + 1 < lines.length && lines[i + 1].trim()
          && lines[i + 1].length - lines[i + 1].trimStart().length > indent) { body.push(""); i += 1; continue; }
      break;
    }
    const li = el("li");
    if (body.length === 1 || depth >= 8) {
      renderInline(body.join(" "), li);
    } else {
      const head = [body[0]];
      let rest = 1;
      while (rest < body.length && body[rest].trim() && !isBlockStart(body[rest])) { head.push(body[rest].trim()); rest += 1; }
      head.forEach((text, index) => { if (index > 0) li.append(el("br")); renderInline(text, li); });
      renderBlocks(body.slice(rest), li, depth + 1);
    }
    list.append(li);
    while (i < lines.length && !lines[i].trim() && i + 1 < lines.length && pattern.test(lines[i + 1])
           && pattern.exec(lines[i + 1])[1].length === indent) i += 1;  // a loose list
  }
  parent.append(list);
  return i;
}

const INLINE = new RegExp([
  /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/.source,                                    // 1,2 code
  /\[([^\]\n]+)\]\(\s*([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?:\s+"[^"\n]*")?\s*\)/.source,  // 3,4 link
  /<((?:https?:\/\/|mailto:)[^\s<>]+)>/.source,                                    // 5 <autolink>
  /((?:https?:\/\/|mailto:)[^\s<>]*[^\s<>.,:;"')\]!?*_~])/.source,                // 6 bare URL
  /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,                                             // 7 bold
  /__(?=\S)([\s\S]*?\S)__(?!\w)/.source,                                            // 8 bold
  /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source,                                         // 9 italic
  /(?<![\w\\])_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/.source,                           // 10 italic
  /~~(?=\S)([\s\S]*?\S)~~/.source,                                                  // 11 strikethrough
  /\\([\\`*_{}[\]()#+\-.!~>|])/.source,                                             // 12 escape
].join("|"), "g");

export function safeHref(raw) {
  const href = String(raw).trim();
  if (!/^(https?:\/\/|mailto:)/i.test(href)) return null;
  try {
    const url = new URL(href);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, label) {
  return el("a", { href, target: "_blank", rel: "noopener noreferrer" }, label);
}

function renderInline(text, parent, depth = 0) {
  if (depth > 6) { parent.append(document.createTextNode(text)); return parent; }
  const pattern = new RegExp(INLINE.source, "g");
  let last = 0;
  let match;
  while ((match = pattern.exec(text))) {
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    last = pattern.lastIndex;
    if (match[2] !== undefined) {
      parent.append(el("code", { text: match[2] }));
    } else if (match[3] !== undefined) {
      const href = safeHref(match[4]);
      if (href) parent.append(renderInline(match[3], link(href), depth + 1));
      else parent.append(document.createTextNode(match[0]));  // not a link we follow: show it as written
    } else if (match[5] !== undefined || match[6] !== undefined) {
      const raw = match[5] ?? match[6];
      const href = safeHref(raw);
      parent.append(href ? link(href, raw) : document.createTextNode(match[0]));
    } else if (match[7] !== undefined || match[8] !== undefined) {
      parent.append(renderInline(match[7] ?? match[8], el("strong"), depth + 1));
    } else if (match[9] !== undefined || match[10] !== undefined) {
      parent.append(renderInline(match[9] ?? match[10], el("em"), depth + 1));
    } else if (match[11] !== undefined) {
      parent.append(renderInline(match[11], el("del"), depth + 1));
    } else if (match[12] !== undefined) {
      parent.append(document.createTextNode(match[12]));
    }
    if (match[0].length === 0) pattern.lastIndex += 1;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  return parent;
}

// --- the API --------------------------------------------------------------------------------------------

class AuthError extends Error {}

async function api(path, { method = "GET", body, key = state.key, form } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store", credentials: "omit" });
  } catch {
    throw new Error("hearth could not be reached. Check your connection.");
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.status === 401) throw new AuthError(data?.error?.message || "That API key was not accepted.");
  if (!response.ok) {
    const error = new Error(data?.error?.message || `hearth answered ${response.status}.`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// --- sign-in --------------------------------------------------------------------------------------------

function storedKey() {
  return localStorage.getItem(KEY_NAME) || sessionStorage.getItem(KEY_NAME);
}

function keepKey(key, remember) {
  (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
  (remember ? sessionStorage : localStorage).removeItem(KEY_NAME);
}

function forgetKey() {
  localStorage.removeItem(KEY_NAME);
  sessionStorage.removeItem(KEY_NAME);
}

function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  const error = $("signin-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("api-key").value = "";
  $("api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const error = $("signin-error");
  if (!key) { error.textContent = "Enter your API key."; error.hidden = false; return; }
  if (/[^\x21-\x7e]/.test(key)) {  // not a key hearth makes (and not something a header can carry)
    error.textContent = "That API key was not accepted. Check it and try again.";
    error.hidden = false;
    return;
  }
  const button = $("signin-button");
  button.disabled = true;
  error.hidden = true;
  try {
    const listing = await api(`/v1/conversations?limit=${PAGE_SIZE}`, { key });
    keepKey(key, $("remember").checked);
    start(key, listing);
  } catch (exc) {
    error.textContent = exc instanceof AuthError ? "That API key was not accepted. Check it and try again." : exc.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function signOut(message) {
  state.key = null;
  const socket = state.socket;
  state.socket = null;
  state.ready = false;
  if (socket) socket.close(1000, "signed out");
  clearTimeout(state.reconnectTimer);
  clearInterval(state.pingTimer);
  state.pending.clear();
  state.chips = [];
  state.conversations = [];
  state.current = null;
  forgetKey();
  $("messages").replaceChildren();
  renderChips();
  history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

function start(key, listing) {
  state.key = key;
  $("signin").hidden = true;
  $("app").hidden = false;
  applyConversations(listing, false);
  connect();
  const wanted = /^#\/c\/([0-9a-f]{32})$/.exec(location.hash);
  if (wanted) openConversation(wanted[1]);
  else newConversation();
}

// --- conversations --------------------------------------------------------------------------------------

function applyConversations(listing, append) {
  state.conversations = append ? [...state.conversations, ...listing.data] : listing.data;
  state.moreConversations = listing.has_more;
  renderConversations();
}

async function refreshConversations() {
  try {
    applyConversations(await api(`/v1/conversations?limit=${Math.max(PAGE_SIZE, state.conversations.length)}`), false);
  } catch (exc) {
    if (exc instanceof AuthError) signOut("Your API key is no longer accepted.");
  }
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshConversations, 150);
}

function titleOf(conversation) {
  return conversation?.title || "New conversation";
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren(...state.conversations.map((c) => {
    const button = el("button", { type: "button", "data-id": c.id, "aria-current": c.id === state.current ? "page" : null },
      el("span", { class: "title", text: titleOf(c) }),
      el("span", { class: "when", text: `${when(c.updated_at)}${c.channel !== "websocket" ? ` · ${c.channel}` : ""}` }));
    button.addEventListener("click", () => openConversation(c.id));
    return el("li", { class: state.unread.has(c.id) ? "unread" : null }, button);
  }));
  $("no-conversations").hidden = state.conversations.length > 0;
  $("more-conversations").hidden = !state.moreConversations;
  const current = state.conversations.find((c) => c.id === state.current);
  if (!$("rename-form").hidden) return;
  $("conversation-title").textContent = state.current ? titleOf(current) : "New conversation";
  $("rename").hidden = $("delete").hidden = !state.current;
}

async function moreConversations() {
  const last = state.conversations.at(-1);
  if (!last) return;
  try {
    applyConversations(await api(`/v1/conversations?limit=${PAGE_SIZE}&before=${last.id}`), true);
  } catch (exc) {
    setStatus(exc.message);
  }
}

function showConversation(id) {
  state.current = id;
  state.firstShownId = null;
  state.loadToken += 1;
  if (id) state.unread.delete(id);
  $("messages").replaceChildren();
  $("older").hidden = true;
  history.replaceState(null, "", id ? `#/c/${id}` : location.pathname);
  cancelRename();
  resetDelete();
  renderConversations();
  closeDrawer();
  updateEmpty();
}

function newConversation() {
  showConversation(null);
  $("input").focus();
}

async function openConversation(id) {
  showConversation(id);
  const token = state.loadToken;
  setStatus("Loading…");
  try {
    const page = await api(`/v1/conversations/${id}/messages?limit=${PAGE_SIZE}`);
    if (token !== state.loadToken) return;
    const waiting = new Set(state.pending.keys());
    const nodes = page.data.filter((m) => !(m.role === "user" && waiting.has(m.client_id))).map(historyNode);
    $("messages").replaceChildren(...nodes);
    for (const entry of state.pending.values()) {
      if (entry.conversation === id) showEntry(entry);
    }
    state.firstShownId = page.data[0]?.id ?? null;
    $("older").hidden = !page.has_more;
    if (!state.conversations.some((c) => c.id === id)) refreshSoon();
    setStatus(state.ready ? "" : "Connecting…");
    updateEmpty();
    scrollToEnd(true);
  } catch (exc) {
    if (token !== state.loadToken) return;
    if (exc instanceof AuthError) { signOut("Your API key is no longer accepted."); return; }
    setStatus("");
    if (exc.status === 404) { newConversation(); setStatus("That conversation no longer exists."); return; }
    $("messages").replaceChildren(errorNode(exc.message));
  }
}

async function olderMessages() {
  if (!state.current || state.firstShownId === null) return;
  const token = state.loadToken;
  const log = $("log");
  const before = log.scrollHeight - log.scrollTop;
  try {
    const page = await api(`/v1/conversations/${state.current}/messages?limit=${PAGE_SIZE}&before=${state.firstShownId}`);
    if (token !== state.loadToken) return;
    $("messages").prepend(...page.data.map(historyNode));
    state.firstShownId = page.data[0]?.id ?? state.firstShownId;
    $("older").hidden = !page.has_more;
    log.scrollTop = log.scrollHeight - before;
  } catch (exc) {
    setStatus(exc.message);
  }
}

function startRename() {
  const current = state.conversations.find((c) => c.id === state.current);
  $("rename-input").value = current?.title || "";
  $("conversation-title").hidden = true;
  $("rename-form").hidden = false;
  $("rename").hidden = $("delete").hidden = true;
  $("rename-input").focus();
}

function cancelRename() {
  $("rename-form").hidden = true;
  $("conversation-title").hidden = false;
  $("rename").hidden = $("delete").hidden = !state.current;
}

async function saveRename(event) {
  event.preventDefault();
  const id = state.current;
  try {
    await api(`/v1/conversations/${id}`, { method: "PATCH", body: { title: $("rename-input").value.trim() || null } });
  } catch (exc) {
    setStatus(exc.message);
  }
  cancelRename();
  await refreshConversations();
}

let deleteTimer = null;
function resetDelete() {
  clearTimeout(deleteTimer);
  const button = $("delete");
  button.textContent = "Delete";
  delete button.dataset.armed;
}

async function deleteConversation() {
  const button = $("delete");
  if (!button.dataset.armed) {  // a second press confirms (no browser dialog)
    button.dataset.armed = "1";
    button.textContent = "Really delete?";
    deleteTimer = setTimeout(resetDelete, 4000);
    return;
  }
  resetDelete();
  const id = state.current;
  try {
    await api(`/v1/conversations/${id}`, { method: "DELETE" });
  } catch (exc) {
    setStatus(exc.message);
    return;
  }
  newConversation();
  await refreshConversations();
}

// --- messages on screen ---------------------------------------------------------------------------------

function updateEmpty() {
  $("empty").hidden = $("messages").childElementCount > 0 || !$("older").hidden;
}

function nearEnd() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 120;
}

function scrollToEnd(force = false) {
  const log = $("log");
  if (force || nearEnd()) log.scrollTop = log.scrollHeight;
}

function fileList(files) {
  if (!files?.length) return null;
  return el("ul", { class: "files", "aria-label": "Attached files" },
    ...files.map((f) => el("li", { class: "chip" }, el("span", { class: "name", text: f.filename || "(deleted file)" }))));
}

function userNode(text, files, createdAt) {
  return el("article", { class: "msg msg-user", "aria-label": "You" },
    text ? el("div", { class: "text", text }) : null,
    fileList(files),
    createdAt ? el("div", { class: "meta", text: when(createdAt) }) : null);
}

function replyNode(role, text, createdAt) {
  const body = el("div", { class: "body" });
  body.append(renderMarkdown(text));
  return el("article", { class: `msg msg-${role}`, "aria-label": role === "notice" ? "Reminder" : "hearth" },
    body, createdAt ? el("div", { class: "meta", text: when(createdAt) }) : null);
}

function errorNode(message) {
  return el("article", { class: "msg msg-error", role: "alert" }, el("div", { class: "body", text: message }));
}

function historyNode(message) {
  if (message.role === "user") {
    const node = userNode(message.text, message.attachments, message.created_at);
    if (message.status === "failed" && message.error) {
      return el("div", { class: "turn" }, node, errorNode(message.error.message || "This message could not be answered."));
    }
    return node;
  }
  return replyNode(message.role, message.text, message.created_at);
}

function buttonsNode(buttons, conversation) {
  const group = el("div", { class: "actions", role: "group", "aria-label": "Choices" });
  for (const choice of buttons) {
    const button = el("button", { type: "button", "data-action": choice.id, text: choice.label });
    button.addEventListener("click", () => {
      for (const other of group.querySelectorAll("button")) other.disabled = true;
      button.setAttribute("aria-pressed", "true");
      send(choice.label, { action: choice.id, conversation });
    });
    group.append(button);
  }
  return group;
}

// An entry is one message sent from this page until its answer is done: its frame (resent as it is after
// a reconnect, so hearth can tell it is the same message) and its place on screen.
function showEntry(entry) {
  $("messages").append(entry.userNode, entry.replyNode);
  updateEmpty();
  scrollToEnd(true);
}

function renderEntry(entry) {
  entry.renderQueued = false;
  const body = entry.replyNode.querySelector(".body");
  const follow = nearEnd();
  body.replaceChildren(renderMarkdown(entry.text));
  if (follow) scrollToEnd(true);
}

function queueRender(entry) {
  if (entry.renderQueued) return;
  entry.renderQueued = true;
  requestAnimationFrame(() => renderEntry(entry));
}

function send(text, { action = null, conversation = state.current, files = [] } = {}) {
  const id = newId();
  const frame = { type: "message", id, text };
  if (conversation) frame.conversation = conversation;
  if (action) frame.action = action;
  if (files.length) frame.attachments = files.map((f) => f.id);
  const entry = {
    id, frame, conversation, view: state.loadToken, acked: false, sent: false, text: "", renderQueued: false,
    userNode: userNode(text, files.map((f) => ({ filename: f.name }))),
    replyNode: el("article", { class: "msg msg-assistant streaming", "aria-label": "hearth", "aria-busy": "true" },
      el("div", { class: "body" })),
  };
  state.pending.set(id, entry);
  if (conversation === state.current) showEntry(entry);
  transmit(entry);
}

function waitingForNewConversation(entry) {
  // Messages written in a new conversation before hearth has said which it is wait for that answer.
  if (entry.conversation !== null) return false;
  for (const other of state.pending.values()) {
    if (other === entry) return false;
    if (other.conversation === null && other.view === entry.view) return true;
  }
  return false;
}

function transmit(entry) {
  if (!state.ready || waitingForNewConversation(entry)) return;
  if (entry.sent) entry.text = "";  // sent before: hearth replays the answer so far from its start
  entry.sent = true;
  state.socket.send(JSON.stringify(entry.frame));
}

function finish(entry) {
  state.pending.delete(entry.id);
  entry.replyNode.classList.remove("streaming");
  entry.replyNode.removeAttribute("aria-busy");
  for (const other of state.pending.values()) {
    if (!other.sent) transmit(other);  // one that waited for this one's new conversation, which never came
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case "ready":
      state.ready = true;
      state.attempt = 0;
      state.user = frame.user || "";
      $("user-name").textContent = state.user ? `Signed in as ${state.user}` : "";
      setStatus("");
      for (const entry of state.pending.values()) transmit(entry);
      return;
    case "ack": {
      const entry = state.pending.get(frame.id);
      if (!entry) return;
      entry.acked = true;
      if (entry.conversation === null) {
        entry.conversation = frame.conversation;
        entry.frame.conversation = frame.conversation;
        if (state.current === null && entry.userNode.isConnected) {
          state.current = frame.conversation;
          history.replaceState(null, "", `#/c/${frame.conversation}`);
        }
        for (const other of state.pending.values()) {
          if (other.conversation === null && other.view === entry.view && !other.sent) {
            other.conversation = frame.conversation;
            other.frame.conversation = frame.conversation;
            transmit(other);
          }
        }
      }
      refreshSoon();
      return;
    }
    case "delta": {
      const entry = state.pending.get(frame.id);
      if (!entry) return;
      entry.text += frame.text;
      queueRender(entry);
      return;
    }
    case "done": {
      const entry = state.pending.get(frame.id);
      if (!entry) return;
      entry.text = frame.text;
      renderEntry(entry);
      if (frame.buttons?.length) entry.replyNode.append(buttonsNode(frame.buttons, entry.conversation));
      finish(entry);
      scrollToEnd();
      refreshSoon();
      return;
    }
    case "error": {
      const entry = frame.id === null || frame.id === undefined ? null : state.pending.get(frame.id);
      if (!entry) { setStatus(frame.message || "Something went wrong."); return; }
      const node = errorNode(frame.message || "This message could not be answered.");
      entry.replyNode.replaceWith(node);
      entry.replyNode = node;
      finish(entry);
      refreshSoon();
      return;
    }
    case "notice": {
      if (frame.conversation === state.current) {
        const node = replyNode("notice", frame.text, Date.now() / 1000);
        if (frame.buttons?.length) node.append(buttonsNode(frame.buttons, frame.conversation));
        $("messages").append(node);
        updateEmpty();
        scrollToEnd();
      } else {
        state.unread.add(frame.conversation);
      }
      refreshSoon();
      return;
    }
    default:
      return;  // pong, and frame types this page does not know yet
  }
}

// --- the WebSocket: connect, authenticate, reconnect with backoff ----------------------------------------

function connect() {
  clearTimeout(state.reconnectTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ws`);
  state.socket = socket;
  state.ready = false;
  setStatus(state.attempt ? "Reconnecting…" : "Connecting…");
  socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token: state.key })));
  socket.addEventListener("message", (event) => {
    if (state.socket !== socket) return;
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    if (frame && typeof frame === "object") onFrame(frame);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;  // replaced, or signed out
    state.ready = false;
    clearInterval(state.pingTimer);
    if (event.code === 4401) { signOut("Your API key is no longer accepted. Sign in again."); return; }
    reconnectLater();
  });
  clearInterval(state.pingTimer);
  state.pingTimer = setInterval(() => {
    if (state.ready && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
  }, PING_EVERY);
}

function reconnectLater() {
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** state.attempt);
  const delay = ceiling / 2 + Math.random() * ceiling / 2;
  state.attempt += 1;
  setStatus(`Connection lost; retrying in ${Math.ceil(delay / 1000)} s…`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connect, delay);
}

// --- attachments ----------------------------------------------------------------------------------------

function renderChips() {
  $("chips").replaceChildren(...state.chips.map((chip) => {
    const label = chip.error ? chip.error : chip.uploading ? "uploading…" : chip.status === "failed" ? "text not readable" : "";
    const remove = el("button", { type: "button", "aria-label": `Remove ${chip.name}`, text: "×" });
    remove.addEventListener("click", () => {
      state.chips = state.chips.filter((c) => c !== chip);
      renderChips();
    });
    return el("li", { class: `chip${chip.error ? " failed" : ""}`, "data-file-id": chip.id },
      el("span", { class: "name", text: chip.name, title: chip.name }),
      label ? el("span", { class: "state", text: label }) : null, remove);
  }));
  updateSend();
}

function updateSend() {
  $("send").disabled = state.chips.some((c) => c.uploading);
}

async function attach(files) {
  for (const file of files) {
    const chip = { name: file.name, id: null, uploading: true, error: null, status: null };
    state.chips.push(chip);
    renderChips();
    const form = new FormData();
    form.append("file", file, file.name);
    if (state.current) form.append("conversation", state.current);
    try {
      const stored = await api("/v1/files", { method: "POST", form });
      chip.id = stored.id;
      chip.status = stored.status;
    } catch (exc) {
      if (exc instanceof AuthError) { signOut("Your API key is no longer accepted."); return; }
      chip.error = exc.message;
    }
    chip.uploading = false;
    renderChips();
  }
}

// --- the composer ---------------------------------------------------------------------------------------

function submit(event) {
  event?.preventDefault();
  if ($("send").disabled) return;
  const input = $("input");
  const text = input.value.trim();
  const files = state.chips.filter((c) => c.id && !c.error);
  if (!text && !files.length) return;
  send(text, { files });
  state.chips = state.chips.filter((c) => c.error);  // refused ones stay, with their reason
  renderChips();
  input.value = "";
  grow();
  input.focus();
}

function grow() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, 192)}px`;
}

function openDrawer() {
  $("sidebar").classList.add("open");
  $("scrim").hidden = false;
  $("open-drawer").setAttribute("aria-expanded", "true");
  $("new-conversation").focus();
}

function closeDrawer() {
  if (!$("sidebar").classList.contains("open")) return;
  $("sidebar").classList.remove("open");
  $("scrim").hidden = true;
  $("open-drawer").setAttribute("aria-expanded", "false");
}

function setUp() {
  $("signin-form").addEventListener("submit", signIn);
  $("new-conversation").addEventListener("click", newConversation);
  $("more-conversations").addEventListener("click", moreConversations);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("older").addEventListener("click", olderMessages);
  $("rename").addEventListener("click", startRename);
  $("rename-form").addEventListener("submit", saveRename);
  $("rename-cancel").addEventListener("click", cancelRename);
  $("rename-input").addEventListener("keydown", (e) => { if (e.key === "Escape") cancelRename(); });
  $("delete").addEventListener("click", deleteConversation);
  $("open-drawer").addEventListener("click", openDrawer);
  $("close-drawer").addEventListener("click", closeDrawer);
  $("scrim").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawer(); });
  $("composer").addEventListener("submit", submit);
  const input = $("input");
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) submit(e);
  });
  $("attach").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    attach([...e.target.files]);
    e.target.value = "";
  });
  const main = $("main");
  let dragDepth = 0;
  main.addEventListener("dragenter", (e) => {
    if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
    e.preventDefault();
    dragDepth += 1;
    $("drop").hidden = false;
  });
  main.addEventListener("dragover", (e) => { if ([...(e.dataTransfer?.types || [])].includes("Files")) e.preventDefault(); });
  main.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("drop").hidden = true;
  });
  main.addEventListener("drop", (e) => {
    dragDepth = 0;
    $("drop").hidden = true;
    if (!e.dataTransfer?.files?.length) return;
    e.preventDefault();
    attach([...e.dataTransfer.files]);
  });
  window.addEventListener("online", () => {
    if (state.key && !state.ready) { state.attempt = 0; connect(); }
  });
}

async function boot() {
  setUp();
  const key = storedKey();
  if (!key) { showSignIn(""); return; }
  try {
    start(key, await api(`/v1/conversations?limit=${PAGE_SIZE}`, { key }));
  } catch (exc) {
    if (exc instanceof AuthError) { forgetKey(); showSignIn("Your saved API key is no longer accepted."); return; }
    showSignIn(exc.message);
  }
}

boot();
