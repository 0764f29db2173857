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
      attempt = 0;  // "live" once the server says its subscriptions hold (hello), not on the open alone
      var host = document.querySelector("main [data-host-id]");
      if (host && document.getElementById("host-chart")) send({type: "watch-host", host: host.dataset.hostId});
      askFleet();
      pingTimer = setInterval(function () { send({type: "ping"}); }, 25000);
    };
    socket.onmessage = function (message) {
      var payload;
      try { payload = JSON.parse(message.data); } catch (e) { return; }
      if (payload.event === "hello") setLive(true);
      handle(payload.event, payload.data || {});
      document.dispatchEvent(new CustomEvent("portal:" + payload.event, {detail: payload.data}));
    };
    socket.onclose = function (closed) {
      setLive(false); clearInterval(pingTimer);
      // 4401 signed out, 4403 no role left: reconnecting cannot help (the next page load says why).
      // 4503 (the server lost its channel layer) and network drops: reconnect with backoff.
      if (closed.code === 4401 || closed.code === 4403) return;
      var delay = Math.min(30000, 1000 * Math.pow(2, attempt++)) * (0.75 + Math.random() * 0.5);
      setTimeout(connect, delay);
    };
  }

  // Events that happened while the socket was not connected (between the page's render and the first
  // connect, or during a reconnect) were not received: fetch the live parts of the desktops shown in
  // flight again.
  function resync() {
    var ids = {};
    document.querySelectorAll("[data-desktop-id] .status-requested, [data-desktop-id] .status-provisioning, " +
      "[data-desktop-id] .status-stopping, [data-desktop-id] .status-rebooting").forEach(function (badge) {
      ids[badge.closest("[data-desktop-id]").dataset.desktopId] = true;
    });
    Object.keys(ids).forEach(refreshDesktop);
  }

  // A live part is an element the server also renders alone: data-live-part is its URL (allocations'
  // desktop-part view), data-desktop-id the desktop it shows. Parts are fetched one at a time, in the
  // order their changes arrived (htmx runs one request per element and keeps only the last one
  // waiting, resolving the others' promises unfetched; the rows inserted into "My desktops" would all
  // wait on their tbody): a part asked for while it waits is fetched once, one asked for while it is
  // being fetched is fetched again after, so the page ends on the server's latest render.
  var queue = [], current = null;

  function refreshDesktop(id) {
    var urls = {};
    document.querySelectorAll('[data-live-part][data-desktop-id="' + id + '"]').forEach(function (el) {
      urls[el.dataset.livePart] = true;
    });
    Object.keys(urls).forEach(function (url) { fetchPart(url); });
  }

  // ``into``: where to insert the part (as its first child) when the page does not show it yet.
  function fetchPart(url, into) {
    if (queue.some(function (job) { return job.url === url; })) return;
    queue.push({url: url, into: into});
    if (!current) next();
  }

  function next() {
    current = queue.shift() || null;
    if (!current) return;
    var url = current.url, into = current.into, requests;
    var shown = document.querySelectorAll('[data-live-part="' + url + '"]');
    if (shown.length) {
      requests = Array.prototype.map.call(shown, function (el) {
        return htmx.ajax("GET", url, {source: el, target: el, swap: "outerHTML"});
      });
    } else if (into && into.isConnected) {
      requests = [htmx.ajax("GET", url, {source: into, target: into, swap: "afterbegin"}).then(function () {
        var empty = into.querySelector(".empty-row");
        if (empty && into.querySelector("[data-live-part]")) empty.remove();
      })];
    } else {
      requests = [];
    }
    Promise.all(requests).then(done, done);
  }

  function done() { updateTimeLeft(); next(); }

  // A part answered from elsewhere (the session ended and the login page came back) is not swapped in.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var path = e.detail.pathInfo;
    if (current && path && path.requestPath === current.url && path.responsePath !== current.url) {
      e.detail.shouldSwap = false;
    }
  });

  function send(obj) {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(obj));
  }

  function text(el, value) { if (el) el.textContent = value; }

  function handle(event, data) {
    if (event === "desktop.status") desktopStatus(data);
    if (event === "desktop.drain") refreshDesktop(data.id);  // its host is drained: the page shows why and when
    if (event === "host.utilization") hostUtilization(data);
    if (event === "fleet.utilization") fleetUtilization(data);
  }

  // fleet.utilization brings only the GPUs whose figures changed (full: false): the GPUs this page shows
  // get their latest figures once, asked for when the socket opens and when a part with tiles is swapped in.
  function askFleet() {
    var ids = Array.prototype.map.call(document.querySelectorAll("[data-gpu-id]"), function (el) {
      return el.dataset.gpuId;
    });
    if (ids.length) send({type: "fleet-snapshot", gpus: ids});
  }
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail && e.detail.target && e.detail.target.querySelector("[data-gpu-id]")) askFleet();
  });

  function fleetUtilization(f) {  // compact rows: [gpu id, SM %, FB used MiB, FB total MiB, °C]
    hostUtilization({gpus: (f.gpus || []).map(function (r) {
      return {gpu: r[0], sm_util: r[1], fb_used_mib: r[2], fb_total_mib: r[3], temperature_c: r[4]};
    })});
  }

  // The parts of the page that show this desktop are fetched again, and the quota card of its tenant
  // (the home page's usage bars: data-tenant-id); a new desktop of mine appears at the top of "My
  // desktops" (its row as the server renders it). The host page refreshes its own list on
  // "desktop-changed".
  function desktopStatus(d) {
    refreshDesktop(d.id);
    if (d.tenant_id != null && d.verb !== "desktop.progress") {
      document.querySelectorAll('[data-live-part][data-tenant-id="' + d.tenant_id + '"]').forEach(function (el) {
        fetchPart(el.dataset.livePart);
      });
    }
    var mine = document.querySelector("#my-desktops tbody");
    var shown = document.querySelector('[data-desktop-id="' + d.id + '"]');
    if (mine && !shown && String(d.owner_id) === body.dataset.user) {
      fetchPart("/desktops/" + d.id + "/parts/row/", mine);  // the desktop-part URL of its row
    }
    body.dispatchEvent(new CustomEvent("desktop-changed"));
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
