// chatsvc browser client: one ES module, no build step, no framework.
// Server data reaches the page only through textContent and DOM properties, never innerHTML,
// so titles and message content cannot inject markup.

const WRITE_LEVELS = ['write', 'admin'];
const MAX_BACKOFF_MS = 30_000;
const TYPING_REPEAT_MS = 2_000; // resend "typing" at most this often while keys are pressed
const TYPING_IDLE_MS = 3_000; // then say "stopped" after this much quiet
const TYPING_STALE_MS = 6_000; // forget a remote typer whose "stopped" frame never came
const PING_MS = 25_000; // keeps idle proxies from dropping the socket
const RECONNECTING = 'Connection lost — reconnecting…';
const PAGE_SIZE = 100; // older messages fetched per "load older"
const AUDIT_PAGE = 100;
const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

const $ = (selector) => document.querySelector(selector);
const csrf = readCsrfToken();

const state = {
  me: null, sessions: [], current: null, // GET /api/me, the session list, the selected session
  view: 0, // bumped on each selection so late answers for an earlier one are dropped
  ws: null, connected: false, canSend: false, // connected: the "connected" frame has arrived
  maxSeq: 0, // highest seq shown: the dedupe key and the since_seq of reconnects
  minSeq: null, hasOlder: false, loadingOlder: false, // the oldest seq shown; whether older ones exist
  collaborators: [], collabOpen: false,
  audit: { offset: 0, filters: {} },
  banner: null, // what clears the current banner: 'action' (next success), 'connection', 'sign-in', 'sticky'
  retryDelay: 1000, retryTimer: null, pingTimer: null,
  online: new Map(), typers: new Map(), // user_id -> email; user_id -> {email, timer}
  typingSentAt: 0, typingIdleTimer: null,
  pending: null, // {id, content} of the last sent message, until its echo arrives
};

function readCsrfToken() {
  const token = document.querySelector('meta[name="csrf-token"]')?.content ?? '';
  return token.startsWith('{{') ? '' : token; // an unrendered template placeholder is no token
}

/** Builds an element: `text` becomes textContent, known properties are set, the rest are attributes. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// ---------------------------------------------------------------- REST and the status line

class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || `Request failed (${status})`);
    Object.assign(this, { status, retryAfter });
  }
}

async function api(method, path, body) {
  const headers = { 'X-CSRF-Token': csrf };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body && JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null); // a proxy's HTML error page has no problem JSON
  if (!res.ok) throw new ApiError(res.status, data, res.headers.get('Retry-After'));
  return data;
}

const sessionPath = (id) => `/api/chat/sessions/${encodeURIComponent(id)}`;
const messagePath = (id) => `/api/chat/messages/${encodeURIComponent(id)}`;

const errorText = (err) => {
  if (err.status === 429) return `Slow down — try again in ${err.retryAfter || 1} s`;
  return err instanceof ApiError ? err.message : 'Network error — please try again.';
};

/** The error of a user action: it stays until the next action succeeds (or is dismissed). */
function showError(err) {
  if (err.status === 401) return showSignIn('Your sign-in has expired.');
  setStatus(errorText(err), 'error', 'action');
}

/**
 * `content` is text or a list of text and nodes; `kind` (info/error) drives the styling;
 * `clears` names the condition whose end removes it: 'action' (the next successful action),
 * 'connection' (the socket is connected again), or 'sticky'.
 */
function setStatus(content, kind = 'info', clears = 'action') {
  const parts = [].concat(content).filter((part) => part !== '');
  $('#status').replaceChildren(...parts);
  $('#status').dataset.kind = parts.length ? kind : '';
  state.banner = parts.length ? clears : null;
  $('#status-dismiss').hidden = !parts.length || clears === 'sign-in';
}

/** The condition `what` ended: drop the banner it caused. */
function clearStatus(what) {
  if (state.banner === what) setStatus('');
}

/** A user action succeeded: an earlier action's error no longer applies. */
const succeeded = () => clearStatus('action');

function showSignIn(text) {
  closeSocket();
  $('#app').hidden = true;
  $('#landing').hidden = false;
  $('#identity').hidden = $('#sign-out').hidden = $('#audit-toggle').hidden = $('#connection').hidden = true;
  setStatus([`${text} `, el('a', { href: '/auth/login', text: 'Sign in' })], 'info', 'sign-in');
}

// ---------------------------------------------------------------- identity

async function start() {
  bindControls();
  try {
    state.me = await api('GET', '/api/me');
  } catch (err) {
    return err.status === 401 ? showSignIn('You are not signed in.') : setStatus(errorText(err), 'error', 'sticky');
  }
  $('#app').hidden = false;
  $('#connection').hidden = false;
  renderMe();
  if (!state.me.permission) {
    $('#no-sessions-hint').textContent = 'Your account has no chat permission yet.';
    renderSessions();
    return setStatus('Your account has no chat permission. Ask an administrator for access.', 'info', 'sticky');
  }
  await loadSessions();
  const wanted = location.hash.slice(1); // reloading keeps the selected session
  if (state.sessions.some((s) => s.id === wanted)) selectSession(wanted);
}

function renderMe() {
  const { email, permission } = state.me;
  $('#me-email').textContent = email;
  $('#me-permission').textContent = permission ?? 'no chat permission';
  $('#identity').hidden = $('#sign-out').hidden = false;
  $('#audit-toggle').hidden = permission !== 'admin';
  if (permission !== 'admin') showAudit(false);
  const canCreate = WRITE_LEVELS.includes(permission);
  $('#new-session-fieldset').disabled = !canCreate;
  const reason = $('#new-session-disabled-reason');
  reason.hidden = canCreate;
  reason.textContent = canCreate ? '' : `Creating sessions needs write permission (yours: ${permission ?? 'none'}).`;
}

/** The level can change on a live socket; everything that depends on it is re-rendered. */
function setPermission(permission) {
  if (permission === undefined || permission === state.me.permission) return;
  state.me.permission = permission;
  renderMe();
  renderSessionPane();
}

function signOut() {
  fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin' })
    .then((res) => (res.ok ? location.reload() : showError(new ApiError(res.status, null, null))), showError);
}

// ---------------------------------------------------------------- sessions

const loadSessions = () => api('GET', '/api/chat/sessions?limit=200')
  .then((sessions) => { state.sessions = sessions; renderSessions(); }, showError);

function renderSessions() {
  $('#session-list').replaceChildren(...state.sessions.map(sessionItem));
  $('#no-sessions').hidden = state.sessions.length > 0;
  document.body.dataset.sessionOpen = String(Boolean(state.current));
}

function sessionItem(session) {
  const button = el('button', { type: 'button', className: 'session-select', text: session.title });
  if (session.id === state.current?.id) button.setAttribute('aria-current', 'true');
  button.addEventListener('click', () => selectSession(session.id));
  const item = el('li', { dataset: { sessionId: session.id } }, button);
  if (session.is_shared) item.append(el('span', { className: 'badge', text: 'shared' }));
  return item;
}

function renderSessionPane() {
  const session = state.current;
  $('#no-session-selected').hidden = Boolean(session);
  $('#session-pane').hidden = !session;
  if (!session) return;
  // The server says what this user may do with the session (the same checks as the
  // requests): offer exactly that.
  const may = (name) => Boolean(session.permissions?.[name]);
  $('#session-title').textContent = session.title;
  $('#session-shared-badge').hidden = !session.is_shared;
  $('#session-settings').hidden = !(may('update') || may('share') || may('delete'));
  $('#session-rename-form').hidden = !may('update');
  const rename = $('#session-rename-input');
  if (document.activeElement !== rename) rename.value = session.title;
  $('#session-share-toggle').hidden = !may('share');
  $('#session-share-toggle').textContent = session.is_shared ? 'Stop sharing' : 'Share with everyone';
  const confirmGroup = $('#session-delete-confirm-group');
  if (!may('delete')) confirmGroup.hidden = true;
  $('#session-delete').hidden = !may('delete') || !confirmGroup.hidden;
  renderCollaborators();
}

function createSession(event) {
  event.preventDefault();
  const title = $('#new-session-title').value.trim();
  if (!title) return setStatus('Chat session title is required', 'error');
  api('POST', '/api/chat/sessions', { title, is_shared: $('#new-session-shared').checked }).then((session) => {
    state.sessions.unshift(session);
    event.target.reset();
    setStatus(`Created session “${session.title}”.`, 'info', 'action');
    selectSession(session.id);
  }, showError);
}

const updateSession = (changes) => api('PUT', sessionPath(state.current.id), changes)
  .then((session) => { succeeded(); replaceSession(session); }, showError);

function deleteSession() {
  const { id } = state.current;
  api('DELETE', sessionPath(id)).then(() => removeSession(id, 'Session deleted.'), showError);
}

function replaceSession(session) {
  // A session_updated frame carries no permissions (each member's differ): keep ours.
  const keep = (old) => ({ ...session, permissions: session.permissions ?? old.permissions });
  state.sessions = state.sessions.map((s) => (s.id === session.id ? keep(s) : s));
  if (state.current?.id === session.id) state.current = keep(state.current);
  renderSessions();
  renderSessionPane();
}

function removeSession(id, message) {
  state.sessions = state.sessions.filter((s) => s.id !== id);
  renderSessions();
  if (state.current?.id !== id) return;
  selectSession(null);
  setStatus(message, 'info', 'action');
}

function toggleDeleteConfirm(show) {
  $('#session-delete-confirm-group').hidden = !show;
  $('#session-delete').hidden = show;
  $(show ? '#session-delete-confirm' : '#session-delete').focus();
}

/** Shows a session: loads its history over REST, then opens the socket from the last seq shown. */
async function selectSession(id) {
  const view = ++state.view;
  closeSocket();
  resetConversation();
  state.current = state.sessions.find((s) => s.id === id) ?? null;
  history.replaceState(null, '', state.current ? `#${id}` : location.pathname + location.search);
  $('#session-delete-confirm-group').hidden = true;
  $('#session-settings').open = false;
  state.collaborators = [];
  showAudit(false);
  renderSessions();
  renderSessionPane();
  renderSendBox();
  if (!state.current) return;
  try {
    // The newest 100 messages and whether older ones exist; since_seq on the socket then
    // delivers anything newer, so nothing is missed between the two.
    const fresh = await api('GET', sessionPath(id));
    if (view !== state.view) return;
    const { messages = [], has_more_messages: hasMore = false, ...session } = fresh;
    replaceSession(session);
    messages.forEach((m) => appendMessage(normalise(m), true));
    state.minSeq = messages.length ? messages[0].seq : null;
    state.hasOlder = Boolean(hasMore);
    renderHistoryTop();
    renderEmptyConversation();
  } catch (err) {
    if (view === state.view) showError(err);
    return;
  }
  if (state.collabOpen) loadCollaborators();
  connect();
}

/** Older history, through before_seq, prepended without moving what the reader looks at. */
async function loadOlder() {
  if (!state.current || !state.hasOlder || state.loadingOlder || state.minSeq == null) return;
  const view = state.view;
  state.loadingOlder = true;
  renderHistoryTop();
  try {
    const older = await api('GET', `${sessionPath(state.current.id)}/messages?before_seq=${state.minSeq}&limit=${PAGE_SIZE}`);
    if (view !== state.view) return;
    const box = $('#message-scroller');
    const anchor = $('#message-list').firstElementChild;
    const anchorTop = anchor ? anchor.getBoundingClientRect().top : 0;
    const items = older.filter((m) => m.seq < state.minSeq).map((m) => messageItem(normalise(m)));
    $('#message-list').prepend(...items);
    if (older.length) state.minSeq = Math.min(state.minSeq, older[0].seq);
    state.hasOlder = older.length >= PAGE_SIZE;
    state.loadingOlder = false;
    renderHistoryTop();
    renderEmptyConversation();
    // The message that was at the top stays where the reader saw it.
    if (anchor) box.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
  } catch (err) {
    if (view === state.view) showError(err);
  } finally {
    if (view === state.view && state.loadingOlder) { state.loadingOlder = false; renderHistoryTop(); }
  }
}

function renderHistoryTop() {
  const button = $('#load-older');
  button.hidden = !state.hasOlder;
  button.disabled = state.loadingOlder;
  button.textContent = state.loadingOlder ? 'Loading older messages…' : 'Load older messages';
  $('#history-start').hidden = state.hasOlder || state.minSeq == null;
}

const renderEmptyConversation = () => {
  $('#no-messages').hidden = !state.current || Boolean($('#message-list').querySelector('li.message'));
};

// ---------------------------------------------------------------- messages

/** REST messages and WebSocket frames name fields differently; one shape for rendering. */
const normalise = (m) => ({
  id: m.id ?? m.message_id, seq: m.seq, userId: m.user_id, email: m.user_email, content: m.content,
  type: m.message_type || 'user', edited: Boolean(m.is_edited), at: m.created_at ?? m.timestamp,
});

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
const formatTime = (iso) => (Number.isNaN(Date.parse(iso)) ? '' : timeFormat.format(new Date(iso)));

function resetConversation() {
  Object.assign(state, { maxSeq: 0, minSeq: null, hasOlder: false, loadingOlder: false, pending: null, canSend: false });
  state.online.clear();
  clearTypers();
  $('#message-list').replaceChildren();
  renderHistoryTop();
  renderEmptyConversation();
  renderMembers();
}

function appendMessage(message, follow = message.userId === state.me.id) {
  // seq only grows within a session, so anything at or below the highest shown is a repeat.
  if (message.seq <= state.maxSeq) return;
  state.maxSeq = message.seq;
  state.minSeq ??= message.seq;
  appendToList(messageItem(message), follow);
  renderEmptyConversation();
}

/** Follows new lines only when the reader is already at the bottom (or wrote the line). */
function appendToList(item, follow = false) {
  const box = $('#message-scroller');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  $('#message-list').append(item);
  if (atBottom || follow) box.scrollTop = box.scrollHeight;
}

/**
 * Message text as DOM nodes: text nodes, and <a> only for http(s) URLs. Never innerHTML, so
 * `<script>` in a message stays text; `javascript:` and other schemes are never links.
 */
function linkify(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    let raw = match[0];
    // Sentence punctuation after a URL is not part of it; a ")" is only when it closes a "(".
    while (/[.,;:!?'\]]$/.test(raw) || (raw.endsWith(')') && (raw.match(/\(/g)?.length ?? 0) < (raw.match(/\)/g)?.length ?? 0))) {
      raw = raw.slice(0, -1);
    }
    let url = null;
    try { url = new URL(raw); } catch { /* not a URL after all: stays text */ }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) continue;
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    nodes.push(el('a', { href: url.href, text: raw, rel: 'noopener noreferrer', target: '_blank' }));
    last = match.index + raw.length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

const renderContent = (node, text) => node.replaceChildren(...linkify(text ?? ''));

function messageItem(m) {
  const own = m.userId === state.me.id;
  // tabindex -1: a click or tap focuses the message, which reveals its actions (focus-within).
  const item = el('li', { className: `message message--${m.type}${own ? ' message--own' : ''}`, dataset: { seq: m.seq, messageId: m.id }, tabIndex: -1 },
    el('div', { className: 'message-meta' },
      el('span', { className: 'message-author', text: m.email || 'unknown' }),
      el('time', { className: 'message-time', dateTime: m.at ?? '', text: formatTime(m.at) }),
      el('span', { className: 'message-edited', text: '(edited)', hidden: !m.edited })),
    el('p', { className: 'message-content' }, ...linkify(m.content ?? '')));
  if (own) {
    const label = (verb) => `${verb} your message from ${formatTime(m.at) || 'earlier'}`;
    item.append(el('div', { className: 'message-actions' },
      el('button', { type: 'button', className: 'message-edit', text: 'Edit', title: label('Edit'), onclick: () => startEdit(item) }),
      el('button', { type: 'button', className: 'message-delete', text: 'Delete', title: label('Delete'), onclick: () => deleteMessage(item) })));
  }
  return item;
}

const findMessage = (id) => $('#message-list').querySelector(`li.message[data-message-id="${CSS.escape(id)}"]`);
function removeMessage(id) {
  findMessage(id)?.remove();
  renderEmptyConversation();
}

function updateMessage(message) {
  const item = findMessage(message.id);
  if (!item) return;
  renderContent(item.querySelector('.message-content'), message.content);
  item.querySelector('.message-edited').hidden = !message.edited;
}

/** Inline edit: Enter saves, Shift+Enter adds a line, Escape cancels; focus returns to Edit. */
function startEdit(item) {
  if (item.querySelector('.message-edit-form')) return;
  const content = item.querySelector('.message-content');
  const input = el('textarea', { className: 'message-edit-input', value: content.textContent, rows: 2, 'aria-label': 'Edit message', maxLength: 32000 });
  const done = () => {
    form.remove();
    content.hidden = false;
    item.querySelector('.message-edit')?.focus();
  };
  const save = () => {
    if (!input.value.trim()) return;
    api('PUT', messagePath(item.dataset.messageId), { content: input.value })
      .then((m) => { succeeded(); updateMessage(normalise(m)); done(); }, showError);
  };
  const form = el('form', { className: 'message-edit-form' }, input,
    el('div', { className: 'edit-buttons' },
      el('button', { type: 'submit', text: 'Save' }),
      el('button', { type: 'button', text: 'Cancel', onclick: done }),
      el('span', { className: 'muted', text: 'Enter saves · Escape cancels' })));
  form.addEventListener('submit', (event) => { event.preventDefault(); save(); });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') { event.preventDefault(); done(); }
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); save(); }
  });
  content.hidden = true;
  content.after(form);
  input.focus();
}

const deleteMessage = (item) => api('DELETE', messagePath(item.dataset.messageId))
  .then(() => { succeeded(); removeMessage(item.dataset.messageId); }, showError);

// ---------------------------------------------------------------- presence and typing

function setOnline({ user_id: id, user_email: email }, online) {
  if (online) state.online.set(id, email);
  else { state.online.delete(id); setTyper(id, email, false); }
  // A system-style line: not a message, so no seq and no class "message".
  if (id !== state.me?.id) appendToList(el('li', { className: 'notice', text: `${email} ${online ? 'joined' : 'left'}` }));
}

/** A coalesced presence frame: who arrived and who left since the last one, and the count. */
function applyPresence(f) {
  for (const user of f.joined || []) setOnline(user, true);
  for (const user of f.left || []) setOnline(user, false);
  state.onlineCount = f.online_count;
  renderMembers();
}

function renderMembers() {
  const items = [...state.online].map(([id, email]) =>
    el('li', { text: id === state.me?.id ? `${email} (you)` : email }));
  // connected.online lists at most 200 users; online_count counts them all.
  const more = (state.onlineCount ?? state.online.size) - state.online.size;
  if (more > 0) items.push(el('li', { className: 'notice', text: `and ${more} more` }));
  $('#members-online').replaceChildren(...items);
}

function setTyper(userId, email, isTyping) {
  clearTimeout(state.typers.get(userId)?.timer);
  if (isTyping) state.typers.set(userId, { email, timer: setTimeout(() => setTyper(userId, email, false), TYPING_STALE_MS) });
  else state.typers.delete(userId);
  const names = [...state.typers.values()].map((t) => t.email);
  $('#typing-indicator').textContent = names.length ? `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…` : '';
}

function clearTypers() {
  for (const [userId, typer] of state.typers) setTyper(userId, typer.email, false);
}

function noteTyping() {
  if (!canSendNow()) return;
  const now = Date.now();
  if (now - state.typingSentAt >= TYPING_REPEAT_MS && sendFrame({ type: 'typing', is_typing: true })) state.typingSentAt = now;
  clearTimeout(state.typingIdleTimer);
  state.typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(state.typingIdleTimer);
  if (state.typingSentAt) sendFrame({ type: 'typing', is_typing: false });
  state.typingSentAt = 0;
}

// ---------------------------------------------------------------- WebSocket

function connect() {
  if (!state.current) return;
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  setConnection('connecting');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${sessionPath(state.current.id)}/ws?since_seq=${state.maxSeq}`);
  state.ws = ws;
  // Handlers check they still own state.ws: a socket replaced by a newer one must stay silent.
  ws.onmessage = (event) => { if (state.ws === ws) handleFrame(event.data); };
  ws.onclose = (event) => { if (state.ws === ws) onSocketClosed(event); };
}

/** Deliberate close (switching session, signing out): code 1000, so nothing reconnects. */
function closeSocket() {
  stopTyping();
  state.ws?.close(1000, 'Leaving session');
  if (state.ws) setConnection('closed: left session');
  clearTimeout(state.retryTimer);
  Object.assign(state, { retryTimer: null, retryDelay: 1000 });
  forgetSocket();
}

/** Whatever closed the socket, presence and typing seen through it are no longer known. */
function forgetSocket() {
  clearInterval(state.pingTimer);
  Object.assign(state, { ws: null, connected: false, onlineCount: null });
  document.body.dataset.wsState = 'closed';
  state.online.clear();
  renderMembers();
  clearTypers();
}

function onSocketClosed(event) {
  forgetSocket();
  renderSendBox();
  if (event.code === 1000) return setConnection(`closed: ${event.reason || 'closed by server'}`);
  // The upgrade request refreshes the cookie's token when it can: one immediate retry.
  if (event.code === 1008 && event.reason === 'Token expired' && !state.retriedExpiry) {
    state.retriedExpiry = true;
    return connect();
  }
  if (event.code === 1008) return onPolicyClose(event.reason || 'Access denied');
  // Anything else (1001 restart, 1006 network, 1013 too slow…) is worth another try.
  setConnection('reconnecting');
  setStatus(RECONNECTING, 'error', 'connection');
  const delay = state.retryDelay;
  state.retryDelay = Math.min(delay * 2, MAX_BACKOFF_MS);
  state.retryTimer = setTimeout(connect, delay);
}

/** 1008 means the server would refuse again, so say why instead of reconnecting. */
function onPolicyClose(reason) {
  setConnection(`closed: ${reason}`);
  state.canSend = false; // nothing left to draft for
  renderSendBox();
  if (reason === 'Session deleted' || reason === 'Session not found') return removeSession(state.current.id, `${reason}.`);
  if (reason === 'Token expired' || reason === 'Authentication required') return showSignIn(`${reason}.`);
  setStatus(reason, 'error', 'sticky');
  if (reason === 'Access revoked') loadSessions(); // the list may have lost this session
}

/** The one place the connection state is shown: the top bar, and (through it) the send box. */
function setConnection(text) {
  $('#connection-state').textContent = text;
  if (text === 'connected') clearStatus('connection');
  renderSendBox();
}
const isOpen = () => state.connected && state.ws?.readyState === WebSocket.OPEN;
const canSendNow = () => isOpen() && state.canSend;

function sendFrame(frame) {
  if (!isOpen()) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

function handleFrame(data) {
  let frame = null;
  try { frame = JSON.parse(data); } catch { /* the server only sends JSON; nothing else is ours to show */ }
  if (frame) frameHandlers[frame.type]?.(frame);
}

const frameHandlers = {
  connected(f) {
    Object.assign(state, { connected: true, retryDelay: 1000, retriedExpiry: false, canSend: Boolean(f.can_send) });
    state.pingTimer = setInterval(() => sendFrame({ type: 'ping' }), PING_MS);
    state.online.clear();
    for (const user of f.online || []) state.online.set(user.user_id, user.user_email);
    state.online.set(state.me.id, state.me.email);
    state.onlineCount = f.online_count ?? state.online.size;
    renderMembers();
    setPermission(f.permission);
    document.body.dataset.wsState = 'open';
    setConnection('connected');
    renewSocketToken(state.ws, false);
  },
  auth_ok: () => { document.body.dataset.tokenRenewals = String(Number(document.body.dataset.tokenRenewals ?? 0) + 1); },
  message(f) {
    if (f.client_msg_id && f.client_msg_id === state.pending?.id) {
      state.pending = null;
      succeeded(); // our send went through: an earlier error no longer applies
    }
    setTyper(f.user_id, f.user_email, false);
    appendMessage(normalise(f));
  },
  message_updated: (f) => updateMessage(normalise(f)),
  message_deleted: (f) => removeMessage(f.message_id),
  session_updated: (f) => replaceSession(f.session),
  session_deleted: (f) => removeSession(f.session_id, 'This session was deleted.'),
  typing: (f) => setTyper(f.user_id, f.user_email, f.is_typing),
  presence: applyPresence,
  permission_changed(f) {
    state.canSend = Boolean(f.can_send);
    setPermission(f.permission);
    if (state.current && f.permissions) {
      replaceSession({ ...state.current, permissions: f.permissions });
    }
    renderSendBox();
  },
  error(f) {
    if (f.code === 'INVALID_TOKEN' && f.message === 'Token revoked') {
      // The identity provider changed this user's groups: renew in place (after a
      // second, so the new token is issued after the change), keeping the socket.
      clearTimeout(state.renewTimer);
      const ws = state.ws;
      state.renewTimer = setTimeout(() => renewSocketToken(ws), 1000);
      return;
    }
    setStatus(f.code === 'RATE_LIMITED' ? f.message : f.message || f.code, 'error', 'action');
    // A refused send must not cost the user their text: put it back if the box is still empty.
    const input = $('#message-input');
    if (state.pending && !input.value) input.value = state.pending.content;
    state.pending = null;
  },
};

// ---------------------------------------------------------------- token renewal

/**
 * Keeps the socket's token fresh in place: shortly before it expires, fetch the
 * session's current token (GET /auth/token refreshes it when due) and hand it to
 * the socket in an `auth` frame. The socket reconnects only when it is itself lost.
 */
function renewSocketToken(ws, send = true) {
  clearTimeout(state.renewTimer);
  fetch('/auth/token', { headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin' })
    .then((res) => (res.ok ? res.json() : null))
    .then((t) => {
      if (!t || state.ws !== ws) return;
      if (send && t.access_token !== state.socketToken) sendFrame({ type: 'auth', access_token: t.access_token });
      state.socketToken = t.access_token;
      if (t.renew_at == null) return; // no refresh token: the socket ends at expiry
      const delay = Math.max(1000, t.renew_at * 1000 - Date.now());
      state.renewTimer = setTimeout(() => renewSocketToken(ws), delay);
    }, () => { if (state.ws === ws) state.renewTimer = setTimeout(() => renewSocketToken(ws), 5000); });
}

// ---------------------------------------------------------------- send box

function sendBlockReason() {
  if (!state.current) return 'Select a session to chat.';
  if (!state.connected) {
    return /connecting/.test($('#connection-state').textContent) ? 'Connecting — sending is paused.' : 'Not connected — sending is paused.';
  }
  if (state.canSend) return '';
  const level = state.me.permission;
  return WRITE_LEVELS.includes(level) ? 'You cannot send messages to this session'
    : `Your permission level (${level ?? 'none'}) does not allow sending messages`;
}

function renderSendBox() {
  const reason = sendBlockReason();
  // A dropped connection only pauses sending; drafting goes on while the right to send stands.
  $('#message-input').disabled = Boolean(reason) && !(state.canSend && state.current);
  $('#send-button').disabled = Boolean(reason);
  $('#send-disabled-reason').textContent = reason;
  $('#send-disabled-reason').hidden = !reason;
}

function sendMessage() {
  const input = $('#message-input');
  const content = input.value;
  if (!content.trim()) return;
  // The reason is already shown next to the Send button, and goes away with its cause.
  if (!canSendNow()) return renderSendBox();
  const id = newClientMsgId();
  sendFrame({ type: 'message', content, client_msg_id: id });
  state.pending = { id, content }; // the echoed "message" frame is the acknowledgement
  input.value = '';
  stopTyping();
}

// crypto.randomUUID exists only in secure contexts (https, localhost); plain http elsewhere needs this.
const newClientMsgId = () => crypto.randomUUID?.()
  ?? Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');

// ---------------------------------------------------------------- collaborators

const collaboratorsPath = (id) => `${sessionPath(id)}/collaborators`;
const canManageCollaborators = () => Boolean(state.current?.permissions?.manage_collaborators);
const isCollaborator = (userId) => state.collaborators.some((c) => c.user_id === userId);

const SUGGEST_DELAY_MS = 250; // one directory request per pause in typing, not one per key
const SUGGEST_LIMIT = 8;
const COLLABORATOR_HINT = 'Suggestions appear as you type; ↑ ↓ to move, Enter to choose. A user id works too.';

// The owner's "add" field suggests users from GET /api/users. `picked` is the user chosen
// from the suggestions: added by user_id while the field still shows their email.
// `seq` drops answers to earlier keystrokes; `view` the suggestions made for another session.
const suggest = { items: [], active: -1, picked: null, timer: null, seq: 0, view: 0 };

// What clears the message under the field: 'input' (the value it was about is edited away),
// 'suggest' (suggestions load again), 'action' (the next collaborator request succeeds).
// Any success clears every kind.
let collaboratorErrorClears = null;

function setCollaboratorError(text, clears = 'action') {
  $('#collaborator-error').textContent = text;
  collaboratorErrorClears = text ? clears : null;
}

function clearCollaboratorError(what) {
  if (what === undefined || collaboratorErrorClears === what) setCollaboratorError('');
}

function toggleCollaborators(open = !state.collabOpen) {
  state.collabOpen = open;
  $('#collaborators-toggle').setAttribute('aria-expanded', String(open));
  $('#collaborators-panel').hidden = !open;
  if (open) loadCollaborators();
  else closeSuggestions();
}

function loadCollaborators() {
  const view = state.view;
  const { id } = state.current;
  clearCollaboratorError();
  return api('GET', collaboratorsPath(id)).then((list) => {
    if (view !== state.view) return;
    state.collaborators = list;
    renderCollaborators();
  }, (err) => { if (view === state.view) setCollaboratorError(errorText(err)); });
}

function renderCollaborators() {
  const manage = canManageCollaborators();
  $('#collaborator-add-form').hidden = !manage;
  $('#collaborators-readonly').hidden = manage;
  $('#collaborators-empty').hidden = state.collaborators.length > 0;
  if (!manage || suggest.view !== state.view) closeSuggestions();
  $('#collaborator-list').replaceChildren(...state.collaborators.map((c) => {
    const item = el('li', { dataset: { userId: c.user_id } },
      el('span', { className: 'collaborator-email', text: c.email }),
      el('span', { className: 'collaborator-id', text: c.user_id }));
    if (manage) {
      item.append(el('button', {
        type: 'button', className: 'collaborator-remove danger', text: 'Remove',
        'aria-label': `Remove ${c.email}`, onclick: () => removeCollaborator(c),
      }));
    }
    return item;
  }));
}

function onCollaboratorInput() {
  const value = $('#collaborator-input').value.trim();
  if (suggest.picked && suggest.picked.email !== value) suggest.picked = null;
  clearCollaboratorError('input');
  clearTimeout(suggest.timer);
  suggest.seq += 1; // an answer for the text before this edit is stale
  if (!value || UUID_RE.test(value)) {
    closeSuggestions();
    clearCollaboratorError('suggest');
    $('#collaborator-hint').textContent = COLLABORATOR_HINT;
    return;
  }
  suggest.timer = setTimeout(() => loadSuggestions(value), SUGGEST_DELAY_MS);
}

function loadSuggestions(query) {
  const seq = ++suggest.seq;
  const view = state.view;
  const params = new URLSearchParams({ query, limit: String(SUGGEST_LIMIT) });
  api('GET', `/api/users?${params}`).then((users) => {
    if (seq !== suggest.seq || view !== state.view) return;
    clearCollaboratorError('suggest');
    if (document.activeElement !== $('#collaborator-input')) return; // left the field meanwhile
    const ownerId = state.current?.user_id; // the owner cannot be a collaborator: not offered
    showSuggestions(users.filter((u) => u.user_id !== ownerId), query, view);
  }, (err) => {
    if (seq !== suggest.seq || view !== state.view) return;
    if (err.status === 401) return showSignIn('Your sign-in has expired.');
    closeSuggestions();
    setCollaboratorError(`Could not look users up. ${errorText(err)}`, 'suggest');
  });
}

function showSuggestions(users, query, view) {
  Object.assign(suggest, { items: users, active: -1, view });
  $('#collaborator-suggestions').replaceChildren(...users.map((user, index) => {
    const option = el('li', {
      id: `collaborator-option-${index}`, role: 'option', className: 'suggestion',
      'aria-selected': 'false', dataset: { userId: user.user_id },
    }, el('span', { className: 'suggestion-email', text: user.email }));
    if (isCollaborator(user.user_id)) {
      option.append(el('span', { className: 'suggestion-note', text: 'already a collaborator' }));
    }
    option.addEventListener('mousedown', (event) => event.preventDefault()); // focus stays in the field
    option.addEventListener('click', () => pickSuggestion(index));
    return option;
  }));
  $('#collaborator-suggestions').hidden = users.length === 0;
  $('#collaborator-input').setAttribute('aria-expanded', String(users.length > 0));
  $('#collaborator-input').removeAttribute('aria-activedescendant');
  $('#collaborator-hint').textContent = users.length
    ? `${users.length} matching ${users.length === 1 ? 'user' : 'users'}: ↑ ↓ to move, Enter or a click to choose.`
    : `No user who has signed in has an email starting with “${query}”. They need to sign in to chatsvc once first.`;
}

function closeSuggestions() {
  clearTimeout(suggest.timer);
  Object.assign(suggest, { items: [], active: -1 });
  $('#collaborator-suggestions').replaceChildren();
  $('#collaborator-suggestions').hidden = true;
  $('#collaborator-input').setAttribute('aria-expanded', 'false');
  $('#collaborator-input').removeAttribute('aria-activedescendant');
}

function moveSuggestion(step) {
  const count = suggest.items.length;
  if (!count) return;
  suggest.active = (suggest.active + step + count) % count;
  const options = $('#collaborator-suggestions').children;
  Array.from(options).forEach((option, index) => option.setAttribute('aria-selected', String(index === suggest.active)));
  const active = options[suggest.active];
  $('#collaborator-input').setAttribute('aria-activedescendant', active.id);
  active.scrollIntoView({ block: 'nearest' });
}

function pickSuggestion(index) {
  const user = suggest.items[index];
  if (!user) return;
  suggest.picked = user;
  const input = $('#collaborator-input');
  input.value = user.email;
  closeSuggestions();
  clearCollaboratorError('input');
  $('#collaborator-hint').textContent = isCollaborator(user.user_id)
    ? `${user.email} is already a collaborator.`
    : `Chosen: ${user.email}. Press Add (or Enter) to add them.`;
  input.focus();
}

function onCollaboratorKey(event) {
  const open = !$('#collaborator-suggestions').hidden;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    const value = event.target.value.trim();
    if (open) moveSuggestion(event.key === 'ArrowDown' ? 1 : -1);
    else if (event.key === 'ArrowDown' && value && !UUID_RE.test(value)) loadSuggestions(value); // reopen
  } else if (event.key === 'Enter' && open && suggest.active >= 0 && !event.isComposing) {
    event.preventDefault(); // choose, do not submit yet
    pickSuggestion(suggest.active);
  } else if (event.key === 'Escape' && open) {
    event.preventDefault();
    event.stopPropagation();
    closeSuggestions();
  }
}

function addCollaborator(event) {
  event.preventDefault();
  const input = $('#collaborator-input');
  const value = input.value.trim();
  if (!value) return;
  const picked = suggest.picked?.email === value ? suggest.picked : null;
  let body = { email: value };
  if (picked) body = { user_id: picked.user_id };
  else if (UUID_RE.test(value)) body = { user_id: value };
  clearCollaboratorError();
  closeSuggestions();
  suggest.seq += 1; // the field is about to be cleared: late suggestions are stale
  api('POST', collaboratorsPath(state.current.id), body).then((entry) => {
    if (isCollaborator(entry.user_id)) { // answered 200: nothing changed
      setCollaboratorError(`${entry.email} is already a collaborator.`, 'input');
      input.focus();
      return;
    }
    succeeded();
    input.value = '';
    suggest.picked = null;
    $('#collaborator-hint').textContent = COLLABORATOR_HINT;
    state.collaborators.push(entry);
    renderCollaborators();
    setStatus(`${entry.email} is now a collaborator.`, 'info', 'action');
  }, (err) => {
    if (err.status === 401) return showSignIn('Your sign-in has expired.');
    // The API's own wording, e.g. "User not found", the 409 for a shared email; it
    // stays until the field is edited or the next collaborator request succeeds.
    setCollaboratorError(errorText(err), 'input');
    input.focus();
  });
}

function removeCollaborator(collaborator) {
  clearCollaboratorError();
  api('DELETE', `${collaboratorsPath(state.current.id)}/${encodeURIComponent(collaborator.user_id)}`).then(() => {
    succeeded();
    state.collaborators = state.collaborators.filter((c) => c.user_id !== collaborator.user_id);
    renderCollaborators();
    setStatus(`${collaborator.email} is no longer a collaborator.`, 'info', 'action');
    $('#collaborator-input').focus();
  }, (err) => {
    if (err.status === 401) return showSignIn('Your sign-in has expired.');
    setCollaboratorError(errorText(err));
  });
}

// ---------------------------------------------------------------- audit (admins)

function showAudit(show) {
  const shown = document.body.dataset.view === 'audit';
  if (show === shown) return;
  document.body.dataset.view = show ? 'audit' : 'chat';
  $('#audit-pane').hidden = !show;
  $('#audit-toggle').setAttribute('aria-expanded', String(show));
  if (show) {
    loadAudit(true);
    $('#audit-user').focus();
  } else if (document.activeElement === document.body || $('#audit-pane').contains(document.activeElement)) {
    $('#audit-toggle').focus();
  }
}

function loadAudit(fresh) {
  if (fresh) {
    state.audit.offset = 0;
    state.audit.filters = {
      user_id: $('#audit-user').value.trim(), action: $('#audit-action').value.trim(), outcome: $('#audit-outcome').value,
    };
  }
  const query = new URLSearchParams({ limit: String(AUDIT_PAGE), offset: String(state.audit.offset) });
  for (const [key, value] of Object.entries(state.audit.filters)) if (value) query.set(key, value);
  $('#audit-error').textContent = '';
  return api('GET', `/api/chat/audit?${query}`).then((events) => {
    const rows = events.map(auditRow);
    if (fresh) $('#audit-rows').replaceChildren(...rows);
    else $('#audit-rows').append(...rows);
    state.audit.offset += events.length;
    $('#audit-empty').hidden = state.audit.offset > 0;
    $('#audit-more').hidden = events.length < AUDIT_PAGE;
  }, (err) => {
    if (err.status === 401) return showSignIn('Your sign-in has expired.');
    $('#audit-error').textContent = errorText(err);
  });
}

// What each outcome reads as. A would-deny event was let through (shadow mode): it is
// marked with a badge whose words, not only its colour, say so.
const OUTCOMES = {
  denied: { text: 'Denied' },
  would_deny: { text: 'Would deny', badge: 'outcome-shadow', more: ' (allowed in shadow mode)' },
  revoked: { text: 'Revoked', badge: 'outcome-revoked', more: ' (access ended by the identity provider)' },
};

function outcomeCell(outcome) {
  const known = OUTCOMES[outcome] ?? { text: outcome ?? '—' };
  const cell = el('td', { className: 'audit-outcome', dataset: { label: 'Outcome' } });
  if (!known.badge) cell.textContent = known.text;
  else cell.append(el('span', { className: `badge ${known.badge}`, text: known.text }),
    el('span', { className: 'visually-hidden', text: known.more }));
  return cell;
}

function auditRow(e) {
  const resource = e.resource_id ? `${e.resource_type} ${e.resource_id}` : e.resource_type;
  return el('tr', { dataset: { action: e.action, outcome: e.outcome ?? '' } },
    // data-label names the column when a phone shows each event as a card.
    el('td', { dataset: { label: 'When' } }, el('time', { dateTime: e.occurred_at, text: formatTime(e.occurred_at) })),
    el('td', { text: e.user_email ?? e.user_id ?? '—', title: e.user_id ?? '', dataset: { label: 'User' } }),
    el('td', { className: 'audit-level', text: e.permission ?? 'none', dataset: { label: 'Level' } }),
    el('td', { className: 'audit-action', text: e.action, dataset: { label: 'Action' } }),
    outcomeCell(e.outcome),
    el('td', { text: resource ?? '', dataset: { label: 'Resource' } }),
    el('td', { className: 'audit-reason', text: e.reason ?? '', dataset: { label: 'Reason' } }));
}

/** Re-computes the trail's hash chain on the server and says what it found. */
function verifyAudit() {
  const button = $('#audit-verify');
  const result = $('#audit-verify-result');
  button.disabled = true;
  result.dataset.kind = '';
  result.textContent = 'Verifying the trail…';
  return api('GET', '/api/chat/audit/verify').then((check) => {
    const counted = `${check.events} event${check.events === 1 ? '' : 's'} checked`;
    result.dataset.kind = check.ok ? 'ok' : 'error';
    result.textContent = check.ok
      ? `Trail intact: ${counted}.`
      : `Trail broken: event ${check.first_bad_id} does not match its hash (edited, inserted, or the event after a deleted one); ${counted}.`;
  }, (err) => {
    if (err.status === 401) return showSignIn('Your sign-in has expired.');
    result.dataset.kind = 'error';
    result.textContent = `Could not verify the trail: ${errorText(err)}`;
  }).finally(() => { button.disabled = false; });
}

// ---------------------------------------------------------------- wiring

function bindControls() {
  const on = (selector, type, handler) => $(selector).addEventListener(type, handler);
  const submit = (handler) => (event) => { event.preventDefault(); handler(); };
  on('#sign-out', 'click', signOut);
  on('#new-session-form', 'submit', createSession);
  on('#session-rename-form', 'submit', submit(() => {
    const title = $('#session-rename-input').value.trim();
    if (title) updateSession({ title });
  }));
  on('#session-share-toggle', 'click', () => updateSession({ is_shared: !state.current.is_shared }));
  on('#session-delete', 'click', () => toggleDeleteConfirm(true));
  on('#session-delete-cancel', 'click', () => toggleDeleteConfirm(false));
  on('#session-delete-confirm', 'click', () => { toggleDeleteConfirm(false); deleteSession(); });
  on('#send-form', 'submit', submit(sendMessage));
  on('#status-dismiss', 'click', () => setStatus(''));
  on('#load-older', 'click', loadOlder);
  // Scrolling to the top asks for the previous page by itself.
  on('#message-scroller', 'scroll', () => { if ($('#message-scroller').scrollTop < 40) loadOlder(); });
  on('#back-to-sessions', 'click', () => selectSession(null));
  on('#collaborators-toggle', 'click', () => toggleCollaborators());
  on('#collaborator-add-form', 'submit', addCollaborator);
  on('#collaborator-input', 'input', onCollaboratorInput);
  on('#collaborator-input', 'keydown', onCollaboratorKey);
  on('#collaborator-input', 'blur', closeSuggestions);
  on('#audit-toggle', 'click', () => showAudit(document.body.dataset.view !== 'audit'));
  on('#audit-close', 'click', () => showAudit(false));
  on('#audit-filter', 'submit', submit(() => loadAudit(true)));
  on('#audit-more', 'click', () => loadAudit(false));
  on('#audit-verify', 'click', verifyAudit);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && $('#session-settings').open) {
      $('#session-settings').open = false;
      $('#session-settings summary').focus();
    }
  });
  on('#message-input', 'keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) submit(sendMessage)(event);
  });
  on('#message-input', 'input', noteTyping);
  // Back online: skip the rest of the backoff wait.
  window.addEventListener('online', () => { if (state.retryTimer) connect(); });
}

start();
