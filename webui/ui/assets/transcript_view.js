// The transcript view (gr.HTML js_on_load): lines synced to the player, search, and the editor.
// The server renders the lines (escaped); this script only moves, marks and edits them, using
// textContent and DOM calls (never innerHTML with text), and sends the edited lines back with
// trigger('save', ...), where the server checks them before storing a revision.
const root = element;
const st = {editing: false, dirty: false, focused: null, snapshot: null, els: [], starts: [],
            current: null, userScrollAt: 0, programmatic: false, hits: [], hit: -1, resume: null};
const $ = (sel) => root.querySelector(sel);
const audio = () => root.querySelector('.tv-audio');
const box = () => root.querySelector('.tv-lines');
const isCjk = (ch) => /[\u3040-\u9fff\uac00-\ud7af]/.test(ch || '');

function clock(t) {
  t = Math.max(0, Math.round(t));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
  const mm = h ? String(m).padStart(2, '0') : String(m);
  return (h ? h + ':' : '') + mm + ':' + String(s).padStart(2, '0');
}

function index() {
  st.els = Array.from(root.querySelectorAll('.tv-line'));
  st.starts = st.els.map((li) => parseFloat(li.dataset.start));
  st.current = null;
}

function lineAt(t) {  // the last line starting at or before t
  let lo = 0, hi = st.starts.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (st.starts[mid] <= t + 0.05) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return found;
}

function keepInView(li) {
  const b = box();
  if (!b || !li) return;
  const top = li.offsetTop - b.offsetTop, bottom = top + li.offsetHeight;
  if (top >= b.scrollTop && bottom <= b.scrollTop + b.clientHeight) return;
  st.programmatic = true;
  b.scrollTop = Math.max(0, top - b.clientHeight / 3);
  setTimeout(() => { st.programmatic = false; }, 80);
}

function highlight(t, force) {
  const i = lineAt(t);
  const li = i >= 0 ? st.els[i] : null;
  if (li === st.current && !force) return;
  if (st.current) st.current.classList.remove('tv-current');
  st.current = li;
  if (!li) return;
  li.classList.add('tv-current');
  const follow = $('.tv-follow');
  const scrolledAway = Date.now() - st.userScrollAt < 4000;  // the user is reading elsewhere
  if (force || (follow && follow.checked && !scrolledAway && !st.editing)) keepInView(li);
}

function seek(t, play) {
  const a = audio();
  if (a) {
    a.currentTime = t;
    if (play) a.play().catch(() => {});
  }
  highlight(t, true);
}

// --- search ------------------------------------------------------------------------------
function clearMarks() {
  root.querySelectorAll('.tv-text mark').forEach((m) => {
    const text = m.parentNode;
    if (text) text.textContent = text.textContent;
  });
  st.hits = []; st.hit = -1;
}

function search(query) {
  clearMarks();
  const hits = $('.tv-hits');
  query = (query || '').trim().toLowerCase();
  if (!query || st.editing) { if (hits) hits.textContent = ''; return; }
  for (const li of st.els) {
    const el = li.querySelector('.tv-text');
    const text = el.textContent, lower = text.toLowerCase();
    let at = lower.indexOf(query);
    if (at < 0) continue;
    const parts = document.createDocumentFragment();
    let from = 0;
    while (at >= 0) {
      parts.appendChild(document.createTextNode(text.slice(from, at)));
      const mark = document.createElement('mark');
      mark.className = 'tv-hit';
      mark.textContent = text.slice(at, at + query.length);
      parts.appendChild(mark);
      st.hits.push(mark);
      from = at + query.length;
      at = lower.indexOf(query, from);
    }
    parts.appendChild(document.createTextNode(text.slice(from)));
    el.textContent = '';
    el.appendChild(parts);
  }
  if (hits) hits.textContent = st.hits.length ? `${st.hits.length} hit${st.hits.length > 1 ? 's' : ''}` : 'no hits';
  if (st.hits.length) step(1);
}

function step(delta) {
  if (!st.hits.length) return;
  if (st.hit >= 0) st.hits[st.hit].classList.remove('tv-hit-now');
  st.hit = (st.hit + delta + st.hits.length) % st.hits.length;
  const mark = st.hits[st.hit];
  mark.classList.add('tv-hit-now');
  st.userScrollAt = Date.now();  // looking at a hit: playback does not pull the list away
  keepInView(mark.closest('.tv-line'));
  const hits = $('.tv-hits');
  if (hits) hits.textContent = `${st.hit + 1} of ${st.hits.length}`;
}

// --- editing -----------------------------------------------------------------------------
function say(text) { const m = $('.tv-edit-msg'); if (m) m.textContent = text; }

function speakers() {
  return [...new Set(st.els.map((li) => li.querySelector('.tv-speaker').textContent.trim()).filter(Boolean))];
}

function fillRename() {
  const from = $('.tv-rename-from');
  if (!from) return;
  from.textContent = '';
  if (!speakers().length) {
    const none = document.createElement('option');
    none.value = ''; none.textContent = '(no speakers yet)';
    from.appendChild(none);
  }
  for (const name of speakers()) {
    const option = document.createElement('option');
    option.value = name; option.textContent = name;
    from.appendChild(option);
  }
}

function setEditing(on) {
  const view = $('.tv');
  if (!view || view.dataset.editable !== '1') return;
  clearMarks();
  const search = $('.tv-search');
  if (search) search.value = '';
  st.editing = on;
  view.classList.toggle('tv-editing', on);
  $('.tv-editbar').hidden = !on;
  $('.tv-edit').hidden = on;
  if (on) st.snapshot = box().innerHTML;  // the server's own HTML, put back by Discard
  const mode = on ? 'plaintext-only' : 'false';
  root.querySelectorAll('.tv-text, .tv-speaker').forEach((el) => el.setAttribute('contenteditable', mode));
  if (on) fillRename();
  say('');
}

function discard() {
  if (st.snapshot !== null) box().innerHTML = st.snapshot;
  st.snapshot = null; st.dirty = false;
  index();
  setEditing(false);
}

function changed(li) { st.dirty = true; if (li) li.classList.add('tv-changed'); }

function newLine(start, end, text, speaker, lang) {
  const li = document.createElement('li');
  li.className = 'tv-line tv-changed';
  li.dataset.start = start.toFixed(3); li.dataset.end = end.toFixed(3);
  const time = document.createElement('button');
  time.type = 'button'; time.className = 'tv-time'; time.textContent = clock(start);
  const who = document.createElement('span');
  who.className = 'tv-speaker'; who.textContent = speaker || '';
  const body = document.createElement('span');
  body.className = 'tv-text'; body.textContent = text;
  if (lang) body.lang = lang;  // the half of a split line is in the line's language
  for (const el of [who, body]) el.setAttribute('contenteditable', 'plaintext-only');
  li.append(time, ' ', who, ' ', body);
  return li;
}

function caretIn(el) {
  const sel = window.getSelection();
  if (!sel || !sel.rangeCount) return -1;
  const range = sel.getRangeAt(0);
  if (!el.contains(range.startContainer)) return -1;
  const before = document.createRange();
  before.selectNodeContents(el);
  before.setEnd(range.startContainer, range.startOffset);
  return before.toString().length;
}

function split() {
  const li = st.focused;
  if (!li || !li.isConnected) return say('Click in the text of the line to split, where it should be cut.');
  const body = li.querySelector('.tv-text');
  const text = body.textContent, at = caretIn(body);
  if (at <= 0 || at >= text.length) return say('Put the cursor inside the text, between the two parts.');
  const start = parseFloat(li.dataset.start), end = parseFloat(li.dataset.end);
  const cut = Math.round((start + (end - start) * at / text.length) * 1000) / 1000;  // by share of characters
  li.dataset.end = cut.toFixed(3);
  body.textContent = text.slice(0, at).trim();
  li.after(newLine(cut, end, text.slice(at).trim(), li.querySelector('.tv-speaker').textContent.trim(), body.lang));
  changed(li); index();
  say(`Split at ${clock(cut)}.`);
}

function merge() {
  const li = st.focused;
  if (!li || !li.isConnected) return say('Click in the line to merge with the one after it.');
  const next = li.nextElementSibling;
  if (!next) return say('The last line has no line after it.');
  const a = li.querySelector('.tv-text').textContent.trim(), b = next.querySelector('.tv-text').textContent.trim();
  const glue = isCjk(a.slice(-1)) && isCjk(b[0]) ? '' : ' ';
  li.querySelector('.tv-text').textContent = a + glue + b;
  li.dataset.end = Math.max(parseFloat(li.dataset.end), parseFloat(next.dataset.end)).toFixed(3);
  next.remove();
  changed(li); index();
  say('Merged.');
}

function rename() {
  const from = $('.tv-rename-from').value, to = $('.tv-rename-to').value.trim();
  if (!from) return say('No speaker to rename yet: type a name in a line\'s speaker badge first.');
  let n = 0;
  for (const li of st.els) {
    const who = li.querySelector('.tv-speaker');
    if (who.textContent.trim() === from) { who.textContent = to; changed(li); n += 1; }
  }
  fillRename();
  say(`${from} renamed to ${to || '(no speaker)'} on ${n} line${n === 1 ? '' : 's'}.`);
}

function save() {
  const lines = st.els.map((li) => ({
    start: parseFloat(li.dataset.start), end: parseFloat(li.dataset.end),
    text: li.querySelector('.tv-text').textContent,
    speaker: li.querySelector('.tv-speaker').textContent.trim() || null,
  }));
  const a = audio();
  st.resume = a ? {t: a.currentTime, playing: !a.paused} : null;
  say('Saving…');
  trigger('save', {lines: JSON.stringify(lines), base: parseInt($('.tv').dataset.latest || '0', 10)});
}

// --- events (delegated: the lines are re-rendered by the server) ----------------------------
root.addEventListener('click', (ev) => {
  const t = ev.target;
  const act = (sel) => t.closest(sel);
  if (act('.tv-edit')) return setEditing(true);
  if (act('.tv-cancel')) return discard();
  if (act('.tv-save')) return save();
  if (act('.tv-split')) return split();
  if (act('.tv-merge')) return merge();
  if (act('.tv-rename')) return rename();
  if (act('.tv-prev')) return step(-1);
  if (act('.tv-next')) return step(1);
  const li = act('.tv-line');
  if (!li) return;
  if (act('.tv-time') || (!st.editing && act('.tv-text, .tv-speaker'))) seek(parseFloat(li.dataset.start), true);
});
root.addEventListener('focusout', (ev) => {
  if (st.editing && ev.target.classList && ev.target.classList.contains('tv-speaker')) fillRename();
});
root.addEventListener('mousedown', (ev) => {  // Split and Merge act where the cursor is: keep it there
  if (ev.target.closest && ev.target.closest('.tv-split, .tv-merge')) ev.preventDefault();
});
root.addEventListener('focusin', (ev) => {
  const li = ev.target.closest && ev.target.closest('.tv-line');
  if (li && st.editing) st.focused = li;
});
root.addEventListener('input', (ev) => {
  if (ev.target.classList.contains('tv-search')) {
    clearTimeout(st.searchTimer);
    st.searchTimer = setTimeout(() => search(ev.target.value), 150);
  } else if (st.editing && ev.target.closest('.tv-line')) {
    changed(ev.target.closest('.tv-line'));
  }
});
root.addEventListener('keydown', (ev) => {
  if (ev.target.classList.contains('tv-search') && ev.key === 'Enter') { ev.preventDefault(); step(ev.shiftKey ? -1 : 1); }
  if (st.editing && ev.key === 'Enter' && ev.target.closest('.tv-line')) ev.preventDefault();  // one line stays one line
});
root.addEventListener('change', (ev) => {
  if (ev.target.classList.contains('tv-speed')) { const a = audio(); if (a) a.playbackRate = parseFloat(ev.target.value); }
});
// Media and scroll events do not bubble: listen in the capture phase.
root.addEventListener('timeupdate', () => { const a = audio(); if (a) highlight(a.currentTime, false); }, true);
root.addEventListener('scroll', (ev) => {
  if (ev.target === box() && !st.programmatic) st.userScrollAt = Date.now();
}, true);
root.addEventListener('loadedmetadata', () => {
  const a = audio(), speed = $('.tv-speed');
  if (a && speed) a.playbackRate = parseFloat(speed.value);
  if (a && st.resume) { a.currentTime = st.resume.t; if (st.resume.playing) a.play().catch(() => {}); st.resume = null; }
}, true);

function rendered() {
  st.editing = false; st.snapshot = null; st.dirty = false; st.focused = null; st.hits = []; st.hit = -1;
  index();
  const a = audio();
  if (a && st.resume && a.readyState >= 1) { a.currentTime = st.resume.t; if (st.resume.playing) a.play().catch(() => {}); st.resume = null; }
  if (a) highlight(a.currentTime, false);
}
watch('value', rendered);
window.addEventListener('beforeunload', (ev) => { if (st.editing && st.dirty) { ev.preventDefault(); ev.returnValue = ''; } });
rendered();
