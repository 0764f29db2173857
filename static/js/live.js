/* The portal's one websocket client: connects to /ws/live/, reconnects with backoff, shows a
 * live/offline indicator, and turns server events into DOM updates (and "portal:<event>"
 * DOM events other scripts can listen to). */
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.live) return;
  var indicator = document.getElementById("live-indicator");
  var attempt = 0, socket = null, pingTimer = null;

  function setLive(on) {
    if (!indicator) return;
    indicator.textContent = on ? "live" : "offline";
    indicator.className = "live " + (on ? "online" : "offline");
    body.dataset.liveState = on ? "live" : "offline";
  }

  function url() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live/";
  }

  function connect() {
    socket = new WebSocket(url());
    socket.onopen = function () {
      resync();
      attempt = 0; setLive(true);
      var host = document.querySelector("main [data-host-id]");
      if (host && document.getElementById("host-chart")) send({type: "watch-host", host: host.dataset.hostId});
      pingTimer = setInterval(function () { send({type: "ping"}); }, 25000);
    };
    socket.onmessage = function (message) {
      var payload;
      try { payload = JSON.parse(message.data); } catch (e) { return; }
      handle(payload.event, payload.data || {});
      document.dispatchEvent(new CustomEvent("portal:" + payload.event, {detail: payload.data}));
    };
    socket.onclose = function () {
      setLive(false); clearInterval(pingTimer);
      var delay = Math.min(30000, 1000 * Math.pow(2, attempt++)) * (0.75 + Math.random() * 0.5);
      setTimeout(connect, delay);
    };
  }

  // Events that happened while the socket was not connected (between the page's render and the first
  // connect, or during a reconnect) were not received: take the desktops' current state from a fresh
  // render of this page. Only pages that show desktops in flight need it.
  function resync() {
    if (!document.querySelector(".status-requested, .status-provisioning, .status-stopping")) return;
    fetch(location.href, {credentials: "same-origin"}).then(function (r) { return r.text(); }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      ["desktop-summary", "timeline"].forEach(function (id) {
        var now = document.getElementById(id), next = fresh.getElementById(id);
        if (now && next) now.replaceWith(next);
      });
      fresh.querySelectorAll("[data-desktop-id]").forEach(function (el) {
        var badge = el.querySelector('[data-field="status"]');
        if (!badge) return;
        document.querySelectorAll('[data-desktop-id="' + el.dataset.desktopId + '"] [data-field="status"]')
          .forEach(function (mine) { mine.textContent = badge.textContent; mine.className = badge.className; });
      });
    });
  }

  function send(obj) {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(obj));
  }

  function text(el, value) { if (el) el.textContent = value; }

  function handle(event, data) {
    if (event === "desktop.status") desktopStatus(data);
    if (event === "host.utilization") hostUtilization(data);
    if (event === "fleet.utilization") fleetUtilization(data);
  }

  function fleetUtilization(f) {  // compact rows: [gpu id, SM %, FB used MiB, FB total MiB, °C]
    hostUtilization({gpus: (f.gpus || []).map(function (r) {
      return {gpu: r[0], sm_util: r[1], fb_used_mib: r[2], fb_total_mib: r[3], temperature_c: r[4]};
    })});
  }

  function desktopStatus(d) {
    var found = false;
    document.querySelectorAll('[data-desktop-id="' + d.id + '"]').forEach(function (el) {
      found = true;
      var badge = el.querySelector('[data-field="status"]');
      if (badge) { badge.textContent = d.status_label; badge.className = "status status-" + d.status; }
      text(el.querySelector('[data-field="reason"]'), d.reason || "");
      if (d.expires_at) { var exp = el.querySelector("[data-expires]"); if (exp) exp.dataset.expires = d.expires_at; }
    });
    var vnc = document.querySelector('[data-field="vnc"]');
    if (vnc && d.vnc_port && document.querySelector('.desktop-head[data-desktop-id="' + d.id + '"]')) {
      vnc.textContent = "VNC on the host, port " + d.vnc_port;
    }
    var mine = document.querySelector("#my-desktops tbody");
    if (!found && mine && String(d.owner_id) === body.dataset.user) {
      var empty = mine.querySelector(".empty-row"); if (empty) empty.remove();
      var row = document.createElement("tr");
      row.dataset.desktopId = d.id;
      row.innerHTML = '<td><a></a></td><td><span data-field="status"></span> <small class="muted" data-field="reason"></small></td><td></td><td data-expires></td>';
      row.querySelector("a").href = "/desktops/" + d.id + "/";
      row.querySelector("a").textContent = d.name;
      mine.prepend(row);
      desktopStatus(d);
    }
    var summary = document.getElementById("desktop-summary");
    if (summary && document.querySelector('.desktop-head[data-desktop-id="' + d.id + '"]')) {
      // Expiry and the buttons a person may press depend on the status: take them from a fresh render.
      fetch(location.href, {credentials: "same-origin"}).then(function (r) { return r.text(); }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("desktop-summary");
        if (fresh) summary.replaceWith(fresh);
      });
    }
    var timeline = document.getElementById("timeline");
    if (timeline && document.querySelector('.desktop-head[data-desktop-id="' + d.id + '"]')) {
      var li = document.createElement("li");
      li.innerHTML = "<time></time> <code></code>";
      li.querySelector("time").textContent = new Date().toTimeString().slice(0, 8);
      li.querySelector("code").textContent = d.verb;
      if (d.reason) li.append(" — " + d.reason);
      timeline.append(li);
    }
    body.dispatchEvent(new CustomEvent("desktop-changed"));
    updateTimeLeft();
  }

  function heat(pct) {  // 0 → calm blue, 100 → hot red
    var hue = 210 - Math.round(2.1 * Math.max(0, Math.min(100, pct)));
    return "hsl(" + hue + ", 70%, 50%)";
  }

  function hostUtilization(h) {
    (h.gpus || []).forEach(function (g) {
      var tile = document.querySelector('[data-gpu-id="' + g.gpu + '"]');
      if (!tile) return;
      var fill = tile.querySelector('[data-field="sm"]');
      if (fill) { fill.style.width = g.sm_util + "%"; fill.style.background = heat(g.sm_util); }
      var fb = g.fb_total_mib ? " · FB " + Math.round(100 * g.fb_used_mib / g.fb_total_mib) + "%" : "";
      text(tile.querySelector('[data-field="util-text"]'), "SM " + Math.round(g.sm_util) + "%" + fb +
        (g.temperature_c != null ? " · " + Math.round(g.temperature_c) + "°C" : ""));
    });
  }

  function updateTimeLeft() {
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      if (!el.dataset.expires || el.closest(".quota")) return;
      var ms = new Date(el.dataset.expires) - new Date();
      if (isNaN(ms)) return;
      var minutes = Math.max(0, Math.round(ms / 60000));
      el.textContent = minutes >= 60 ? Math.floor(minutes / 60) + " h " + (minutes % 60) + " min left" : minutes + " min left";
    });
  }

  document.addEventListener("submit", function (e) {
    var button = e.submitter || e.target.querySelector("[data-confirm]");
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) e.preventDefault();
  });

  setLive(false);
  connect();
  setInterval(updateTimeLeft, 30000);
  window.portalLive = {send: send};
})();
