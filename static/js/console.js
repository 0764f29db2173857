/* The console page: the guest's screen through noVNC, over the WebSocket a console ticket names.
 *
 * The page's data comes from data-* attributes on #console (no inline script). The flow: POST the
 * ticket URL (session + CSRF) → {ws_url, expires_at}; open the WebSocket ourselves and hand it to
 * noVNC, so its close event (code and reason, see docs: 4000 desktop stopped … 4503 unavailable) is
 * ours to read and say in words. A dropped network (1006) or a lost host connection (4500) reconnects
 * by itself with a fresh ticket and capped backoff (1, 2, 4 … 30 s), for as long as a ticket is
 * granted; the ticket endpoint answering 404/409/401/403 ends that, with its reason. */
import RFB from "../vendor/novnc/core/rfb.js";
import KeyTable from "../vendor/novnc/core/input/keysym.js";
import keysyms from "../vendor/novnc/core/input/keysymdef.js";

const root = document.getElementById("console");
const screen = document.getElementById("console-screen");
const statusLine = document.getElementById("console-status");
const idleNote = document.getElementById("console-idle");
const clipboardPanel = document.getElementById("console-clipboard");
const clipboardText = document.getElementById("console-clipboard-text");
const clipboardNote = document.getElementById("console-clipboard-note");
const scaleBox = root.querySelector('[data-action="scale"]');
const fullscreenButton = root.querySelector('[data-action="fullscreen"]');
const reconnectButton = root.querySelector('[data-action="reconnect"]');
const desktopId = root.dataset.desktopId;
const desktopName = root.dataset.desktopName;

/** What each close code means (the reason the server sends, when it sends one, is shown instead). */
const CLOSE_WORDS = {
  1000: "the console was closed",
  1001: "the portal's server is restarting",
  1005: "the console was closed",
  1006: "the network connection dropped",
  1011: "the portal's server had an error",
  4000: "the desktop stopped",
  4001: "the console was opened in another window",
  4002: "the console was idle for too long (the desktop keeps running)",
  4003: "you signed out",
  4004: "you may no longer use this desktop",
  4401: "the console ticket was refused",
  4500: "the connection to the host was lost",
  4503: "the console is unavailable",
};
/** Closes after which the console reconnects by itself: the path broke, not the right to use it. */
const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4500]);
/** Closes after which reconnecting is pointless until something changes (no Reconnect button). */
const FINAL_CODES = new Set([4000, 4003, 4004]);
const BACKOFF_MAX_S = 30;
/** WebSockets refused at their handshake this many times in a row (with tickets granted) end the retries. */
const MAX_REFUSED_HANDSHAKES = 5;
const CLIPBOARD_MAX_CHARS = 4096;

let rfb = null;
let socket = null;
let attempt = 0; // reconnect attempts since the last connection that worked
let refusedHandshakes = 0;
let retryTimer = null;
let waitingForRunning = root.dataset.running !== "1";
let leaving = false;

// --- the status line ---------------------------------------------------------------------------

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text;
  root.dataset.state = state;
  const connected = state === "connected";
  root.querySelectorAll("[data-needs-connection]").forEach((el) => { el.disabled = !connected; });
  reconnectButton.hidden = state !== "disconnected" || root.dataset.final === "1";
  if (!connected) screen.dataset.message = text;
}

function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return "";
  return /[.!?…]$/.test(s) ? s : s + ".";
}

/** The last "desktop.status" event of this desktop (portal:desktop.status, from live.js): it says why a
 * desktop stopped (released, expired, failed) when the close code alone says only that it stopped. */
let lastDesktopEvent = null;
const DESKTOP_EVENT_FRESH_MS = 5000;

function stoppedWords() {
  const d = lastDesktopEvent;
  if (!d || Date.now() - d.at > DESKTOP_EVENT_FRESH_MS) return CLOSE_WORDS[4000];
  const why = String(d.reason || d.status_label || d.status || "").trim().replace(/[.!]+$/, "");
  return why ? `${CLOSE_WORDS[4000]} (${why.charAt(0).toLowerCase() + why.slice(1)})` : CLOSE_WORDS[4000];
}

/** Why a close happened, in words: the server's reason where the ASGI server passes it on (Daphne
 * sends the code only), else what the code means. */
function closeWords(event) {
  const reason = (event.reason || "").trim();
  if (reason) return reason;
  if (event.code === 4000) return stoppedWords();
  return CLOSE_WORDS[event.code] || `the connection closed (code ${event.code})`;
}

/** Stop for good (until the page is reloaded, the Reconnect button is used, or the desktop runs again). */
function stop(text, { final = false } = {}) {
  clearTimeout(retryTimer);
  retryTimer = null;
  root.dataset.final = final ? "1" : "";
  setStatus("disconnected", `Disconnected: ${sentence(text)}`);
}

function scheduleReconnect(why) {
  clearTimeout(retryTimer);
  const delay = Math.min(BACKOFF_MAX_S, 2 ** attempt);
  attempt += 1;
  const started = Date.now();
  const tick = () => {
    const left = Math.max(0, Math.ceil(delay - (Date.now() - started) / 1000));
    if (left <= 0) { connect(); return; }
    setStatus("reconnecting", `Connection lost: ${sentence(why)} Reconnecting in ${left} s…`);
    retryTimer = setTimeout(tick, Math.min(1000, left * 1000));
  };
  tick();
}

// --- tickets -----------------------------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

class TicketRefused extends Error {
  constructor(message, { final }) { super(message); this.final = final; }
}

async function fetchTicket() {
  let response;
  try {
    response = await fetch(root.dataset.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
  } catch (err) {
    throw new TicketRefused("the portal cannot be reached", { final: false });
  }
  let body = {};
  try { body = await response.json(); } catch (err) { /* an HTML error page: the status says enough */ }
  if (response.ok && body.ws_url) return body;
  const message = body.error && body.error.message;
  if (response.status === 401 || response.status === 403) {
    throw new TicketRefused(message && response.status === 403 && !/credentials/i.test(message)
      ? message : "you are signed out: sign in again to open the console", { final: true });
  }
  if (response.status === 404) {
    throw new TicketRefused("this desktop no longer exists or is no longer yours", { final: true });
  }
  if (response.status === 409) {
    throw new TicketRefused(message || "the desktop is not running", { final: true });
  }
  throw new TicketRefused(message || `the portal answered ${response.status}`, { final: false });
}

// --- the connection ----------------------------------------------------------------------------

async function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  root.dataset.final = "";
  waitingForRunning = false;
  setStatus("connecting", attempt ? `Reconnecting to ${desktopName}…` : `Connecting to ${desktopName}…`);
  let ticket;
  try {
    ticket = await fetchTicket();
  } catch (err) {
    if (leaving) return;
    if (err.final) {
      waitingForRunning = /not running/i.test(err.message);
      stop(err.message, { final: !waitingForRunning });
      if (waitingForRunning) screen.dataset.message += " The console opens when it runs.";
    } else {
      scheduleReconnect(err.message);
    }
    return;
  }
  if (leaving) return;
  open(ticket.ws_url);
}

function open(url) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  socket = ws;
  let opened = false;
  let failure = "";
  ws.addEventListener("open", () => { opened = true; });
  // Registered before noVNC attaches its own handlers, so this runs first on close.
  ws.addEventListener("close", (event) => {
    if (socket !== ws || leaving) return;
    socket = null;
    hideIdleWarning();
    onClose(event, opened, failure);
  });
  rfb = new RFB(screen, ws, { shared: true });
  rfb.scaleViewport = scaleBox.checked;
  rfb.resizeSession = false;
  rfb.background = "#0b1220";
  rfb.addEventListener("connect", () => {
    root.dataset.closeCode = "";
    attempt = 0;
    refusedHandshakes = 0;
    setStatus("connected", `Connected to ${desktopName}. Click the screen to type into it.`);
    rfb.focus();
  });
  rfb.addEventListener("securityfailure", (event) => {
    failure = event.detail.reason || "the guest refused the VNC security handshake";
  });
  rfb.addEventListener("credentialsrequired", () => {
    failure = "the guest asks for a VNC password, which the portal's console does not give";
    rfb.disconnect();
  });
}

function onClose(event, opened, failure) {
  root.dataset.closeCode = String(event.code);
  root.dataset.closeReason = event.reason || "";
  const words = failure || closeWords(event);
  if (FINAL_CODES.has(event.code)) {
    stop(words, { final: true });
    return;
  }
  // While reconnecting after a drop, "unavailable" (the host's relay restarting, the guest's display not
  // answering yet) is part of the same outage: keep trying. Opened that way at first, it is reported.
  if (RECONNECT_CODES.has(event.code) || (event.code === 4503 && attempt > 0)) {
    if (!opened && event.code === 1006) {
      refusedHandshakes += 1;
      if (refusedHandshakes >= MAX_REFUSED_HANDSHAKES) {
        stop("the portal refuses the console's connection");
        return;
      }
    }
    scheduleReconnect(words);
    return;
  }
  stop(words);
}

// --- what the person does ----------------------------------------------------------------------

function showIdleWarning(detail) {
  if (detail && (detail.desktop_id ?? detail.desktop ?? detail.id) != null &&
      String(detail.desktop_id ?? detail.desktop ?? detail.id) !== desktopId) return;
  if (!socket) return;
  let at = null;
  const when = detail && (detail.closes_at || detail.close_at || detail.deadline);
  if (when) at = new Date(when);
  const seconds = detail && (detail.seconds ?? detail.in_s ?? detail.seconds_left);
  if ((!at || isNaN(at)) && seconds != null) at = new Date(Date.now() + 1000 * Number(seconds));
  // in the person's zone, labelled as the pages label times (tz.js)
  const time = at && !isNaN(at) && window.portalTime ? window.portalTime.format(at, { seconds: true, timeOnly: true }) : "soon";
  idleNote.textContent = `This console is closing at ${time} for inactivity — move the mouse or type to keep it open.`;
  idleNote.hidden = false;
}

function hideIdleWarning() { idleNote.hidden = true; }

/** US-layout keys for the characters of pasted text: [code, shifted]. Others go as their keysym alone. */
const US_KEYS = (() => {
  const keys = {};
  for (const c of "abcdefghijklmnopqrstuvwxyz") {
    keys[c] = ["Key" + c.toUpperCase(), false];
    keys[c.toUpperCase()] = ["Key" + c.toUpperCase(), true];
  }
  const pairs = [
    ["Backquote", "`~"], ["Digit1", "1!"], ["Digit2", "2@"], ["Digit3", "3#"], ["Digit4", "4$"],
    ["Digit5", "5%"], ["Digit6", "6^"], ["Digit7", "7&"], ["Digit8", "8*"], ["Digit9", "9("],
    ["Digit0", "0)"], ["Minus", "-_"], ["Equal", "=+"], ["BracketLeft", "[{"], ["BracketRight", "]}"],
    ["Backslash", "\\|"], ["Semicolon", ";:"], ["Quote", "'\""], ["Comma", ",<"], ["Period", ".>"],
    ["Slash", "/?"],
  ];
  for (const [code, [plain, shifted]] of pairs) {
    keys[plain] = [code, false];
    keys[shifted] = [code, true];
  }
  keys[" "] = ["Space", false];
  return keys;
})();

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Type ``text`` into the guest, key by key (the lab guest has no clipboard agent); also offer it as
 * the VNC clipboard for guests that have one. Shifted characters are typed with Shift held, as the
 * guest's keyboard (QEMU's, US layout) turns key codes, not characters, into input. */
async function sendText(text) {
  const chars = Array.from(text.replace(/\r\n?/g, "\n"));
  rfb.clipboardPasteFrom(text);
  let sent = 0;
  for (const ch of chars) {
    if (!rfb || root.dataset.state !== "connected") break;
    if (ch === "\n") {
      rfb.sendKey(KeyTable.XK_Return, "Enter");
    } else if (ch === "\t") {
      rfb.sendKey(KeyTable.XK_Tab, "Tab");
    } else {
      const keysym = keysyms.lookup(ch.codePointAt(0));
      const [code, shifted] = US_KEYS[ch] || [null, false];
      if (shifted) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", true);
      rfb.sendKey(keysym, code);
      if (shifted) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", false);
    }
    sent += 1;
    if (sent % 16 === 0) await pause(20); // let the guest's keyboard queue drain
  }
  return sent;
}

root.querySelector('[data-action="ctrl-alt-del"]').addEventListener("click", () => {
  if (rfb) { rfb.sendCtrlAltDel(); rfb.focus(); }
});

root.querySelector('[data-action="clipboard"]').addEventListener("click", (event) => {
  clipboardPanel.hidden = !clipboardPanel.hidden;
  event.currentTarget.setAttribute("aria-expanded", String(!clipboardPanel.hidden));
  if (!clipboardPanel.hidden) clipboardText.focus();
});

root.querySelector('[data-action="send-text"]').addEventListener("click", async () => {
  const text = clipboardText.value;
  if (!text) { clipboardNote.textContent = "Nothing to send: write or paste the text first."; return; }
  if (text.length > CLIPBOARD_MAX_CHARS) {
    clipboardNote.textContent = `Too long: at most ${CLIPBOARD_MAX_CHARS} characters at a time.`;
    return;
  }
  if (!rfb || root.dataset.state !== "connected") {
    clipboardNote.textContent = "Not connected: the text was not sent.";
    return;
  }
  clipboardNote.textContent = `Typing ${Array.from(text).length} characters…`;
  const sent = await sendText(text);
  clipboardNote.textContent = `Sent ${sent} characters to the desktop.`;
  root.dataset.clipboardSent = String(sent);
  if (rfb) rfb.focus();
});

scaleBox.addEventListener("change", () => {
  if (rfb) rfb.scaleViewport = scaleBox.checked;
  root.classList.toggle("scaled", scaleBox.checked);
});
root.classList.toggle("scaled", scaleBox.checked);

fullscreenButton.addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else if (root.requestFullscreen) root.requestFullscreen().catch(() => {});
});
document.addEventListener("fullscreenchange", () => {
  const full = document.fullscreenElement === root;
  fullscreenButton.textContent = full ? "Exit fullscreen" : "Fullscreen";
  root.classList.toggle("fullscreen", full);
  if (rfb) rfb.focus();
});
if (!document.fullscreenEnabled) fullscreenButton.hidden = true;

reconnectButton.addEventListener("click", () => { attempt = 0; refusedHandshakes = 0; connect(); });

for (const type of ["mousemove", "mousedown", "keydown", "wheel", "touchstart"]) {
  screen.addEventListener(type, hideIdleWarning, { passive: true, capture: true });
}
document.addEventListener("portal:console.idle_warning", (event) => showIdleWarning(event.detail));
// A desktop that was not running when the page opened (or stopped being so) is connected to as soon
// as the portal's live events say it runs.
document.addEventListener("portal:desktop.status", (event) => {
  const d = event.detail || {};
  if (String(d.id) !== desktopId) return;
  lastDesktopEvent = { ...d, at: Date.now() };
  // Closed as "stopped" a moment before this event said why: say it now.
  if (root.dataset.closeCode === "4000" && !root.dataset.closeReason && d.status !== "running") {
    stop(stoppedWords(), { final: true });
  }
  if (String(d.id) === desktopId && d.status === "running" && waitingForRunning && !socket) {
    attempt = 0;
    connect();
  }
});
// Back to a page kept in the back/forward cache: its console was closed on leaving; start afresh.
window.addEventListener("pageshow", (event) => { if (event.persisted) location.reload(); });
window.addEventListener("pagehide", () => {
  leaving = true;
  clearTimeout(retryTimer);
  if (rfb) rfb.disconnect();
});

if (waitingForRunning) {
  stop(root.dataset.notRunning || "the desktop is not running");
  screen.dataset.message += " The console opens when it runs.";
} else {
  connect();
}
