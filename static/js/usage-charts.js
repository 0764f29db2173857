/* The usage report's charts (uPlot, vendored): GPU-hours per tenant and per profile in each day (or
 * week) of the period. The data comes with the page (<script type="application/json" id="usage-series">,
 * the same figures as /api/usage/'s "series"); times in the person's zone, labelled (tz.js). */
(function () {
  "use strict";
  var source = document.getElementById("usage-series");
  if (!window.uPlot || !source) return;
  var data = JSON.parse(source.textContent);
  var time = window.portalTime;
  var zone = time ? time.zone : "UTC";
  var colors = ["#2f6fde", "#76b900", "#c0392b", "#8e44ad", "#c98a06", "#16a085", "#d35400", "#34495e"];
  var bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({size: [0.8, 40], gap: 1}) : null;

  function tzDate(ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); }
  function day(u, ts) {
    if (ts == null) return "—";
    var text = time ? time.format(ts) : new Date(ts * 1e3).toISOString();
    return (data.step === "week" ? "week of " : "") + text.slice(0, 10);
  }
  function hours(u, v) { return v == null ? "—" : v.toFixed(3) + " GPU-h"; }

  function draw(name) {
    var el = document.getElementById("usage-chart-" + name);
    if (!el) return;
    var lines = data[name] || [];
    var many = lines.length > 1;
    // one series per key; a single key is drawn as bars, several as lines (bars would hide each other)
    var series = [{label: data.step === "week" ? "Week" : "Day", value: day}].concat(lines.map(function (line, i) {
      var color = colors[i % colors.length];
      return {label: line.key, stroke: color, width: 2, value: hours, points: {show: true},
              fill: many ? undefined : color + "55", paths: many || !bars ? undefined : bars};
    }));
    var chart = new uPlot({
      width: Math.max(300, el.clientWidth - 8), height: 240, tzDate: tzDate,
      scales: {x: {time: true}, y: {range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; }}},
      series: series,
      axes: [{}, {label: "GPU-hours", size: 60}],
    }, [data.t].concat(lines.map(function (line) { return line.gpu_hours; })), el);
    el.dataset.ready = "1";
    window.addEventListener("resize", function () { chart.setSize({width: Math.max(300, el.clientWidth - 8), height: 240}); });
  }

  draw("tenant");
  draw("profile");
})();
