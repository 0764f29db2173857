/* Live utilization charts (uPlot, vendored): a desktop's vGPU, and every GPU of a host. */
(function () {
  "use strict";
  if (!window.uPlot) return;
  var WINDOW_S = 30 * 60;
  // Times in the person's zone, labelled as the pages label them (tz.js).
  var time = window.portalTime;
  var zone = time ? time.zone : "UTC";
  function tzDate(ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); }
  var timeSeries = {label: "Time", value: function (u, ts) {
    if (ts == null) return "—";
    return time ? time.format(ts, {seconds: true}) : new Date(ts * 1e3).toISOString();
  }};
  function gib(mib) { return mib == null ? null : Math.round(mib / 102.4) / 10; }  // memory is shown in GiB everywhere

  function json(id) { var el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  function width(el) { return Math.max(320, el.clientWidth - 8); }
  function trim(data) {
    var cutoff = Date.now() / 1000 - WINDOW_S, i = 0;
    while (i < data[0].length && data[0][i] < cutoff) i++;
    if (i) data.forEach(function (series) { series.splice(0, i); });
  }

  var vgpu = document.getElementById("vgpu-chart");
  if (vgpu) {
    var history = json("vgpu-history") || [];
    var data = [history.map(function (s) { return s.t; }), history.map(function (s) { return s.sm_util; }),
                history.map(function (s) { return gib(s.fb_used_mib); })];
    var chart = new uPlot({
      width: width(vgpu), height: 240, tzDate: tzDate,
      scales: {pct: {range: [0, 100]}, gib: {range: [0, gib(Number(vgpu.dataset.fbTotal)) || null]}},
      series: [timeSeries, {label: "SM %", scale: "pct", stroke: "#2f6fde", width: 2},
               {label: "Framebuffer used (GiB)", scale: "gib", stroke: "#76b900", width: 2}],
      axes: [{}, {scale: "pct", label: "SM %"}, {scale: "gib", side: 1, label: "GiB", grid: {show: false}}],
    }, data, vgpu);
    document.addEventListener("portal:vgpu.utilization", function (e) {
      if (e.detail.mdev_uuid !== vgpu.dataset.mdev) return;
      var empty = document.getElementById("chart-empty"); if (empty) empty.remove();
      data[0].push(e.detail.sampled_at); data[1].push(e.detail.sm_util); data[2].push(gib(e.detail.fb_used_mib));
      trim(data); chart.setData(data);
    });
  }

  var host = document.getElementById("host-chart");
  if (host) {
    // "<gpu id>:<PCI address>" (the address has colons of its own: split on the first only)
    var gpus = host.dataset.gpus ? host.dataset.gpus.split(",").map(function (x) {
      var at = x.indexOf(":");
      return [x.slice(0, at), x.slice(at + 1)];
    }) : [];
    var hist = json("host-history") || {};
    var colors = ["#2f6fde", "#76b900", "#c0392b", "#8e44ad", "#c98a06", "#16a085", "#d35400", "#34495e"];
    var times = {};
    gpus.forEach(function (g) { (hist[g[0]] || []).forEach(function (s) { times[s.t] = true; }); });
    var ts = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
    var hdata = [ts].concat(gpus.map(function (g) {
      var byT = {}; (hist[g[0]] || []).forEach(function (s) { byT[s.t] = s.sm_util; });
      return ts.map(function (t) { return t in byT ? byT[t] : null; });
    }));
    var hchart = new uPlot({
      width: width(host), height: 260, scales: {y: {range: [0, 100]}}, tzDate: tzDate,
      series: [timeSeries].concat(gpus.map(function (g, i) {
        return {label: g[1], stroke: colors[i % colors.length], width: 2, spanGaps: true};
      })),
      axes: [{}, {label: "SM %"}],
    }, hdata, host);
    var hostId = host.closest("main").querySelector("[data-host-id]").dataset.hostId;
    document.addEventListener("portal:host.utilization", function (e) {
      if (String(e.detail.host) !== hostId) return;
      hdata[0].push(e.detail.sampled_at);
      gpus.forEach(function (g, i) {
        var reading = (e.detail.gpus || []).filter(function (x) { return String(x.gpu) === g[0]; })[0];
        hdata[i + 1].push(reading ? reading.sm_util : null);
      });
      trim(hdata); hchart.setData(hdata);
    });
  }
})();
