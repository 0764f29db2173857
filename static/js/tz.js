/* One time zone per person. Keeps the browser's zone in the "tz" cookie (the server renders every
 * page in it: core/timezones.py), and formats the times live updates show the way the server does:
 * in the page's zone (<body data-tz>), labelled ("2026-12-02 10:15 CET"). window.portalTime.format. */
(function () {
  "use strict";
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* no Intl: UTC */ }
  if (/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone) && document.cookie.split("; ").indexOf("tz=" + zone) < 0) {
    document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
  }

  var page = document.body.dataset;
  var pageZone = page.tz || "UTC";
  var parts;
  try {
    parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: pageZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  } catch (e) {
    pageZone = "UTC";
    parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: "UTC", hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  function fields(date) {
    var f = {};
    parts.formatToParts(date).forEach(function (p) { f[p.type] = p.value; });
    return f;
  }

  // The label as core.timezones.label gives it: the page's label while the offset is the page's
  // (the zone's abbreviation, e.g. CET), else the offset itself (UTC+02:00).
  function label(date, f) {
    var local = Date.UTC(+f.year, +f.month - 1, +f.day, +f.hour, +f.minute, +f.second);
    var offset = Math.round((local - Math.floor(date.getTime() / 1000) * 1000) / 60000);
    if (String(offset) === page.tzOffset && page.tzLabel) return page.tzLabel;
    var sign = offset < 0 ? "-" : "+", abs = Math.abs(offset);
    return "UTC" + sign + String(Math.floor(abs / 60)).padStart(2, "0") + ":" + String(abs % 60).padStart(2, "0");
  }

  // ``when``: a Date, an ISO string or seconds since the epoch. ``options.seconds`` adds seconds;
  // ``options.timeOnly`` leaves the date out.
  function format(when, options) {
    options = options || {};
    var date = typeof when === "number" ? new Date(when * 1000) : new Date(when);
    if (isNaN(date)) return "";
    var f = fields(date);
    var time = f.hour + ":" + f.minute + (options.seconds ? ":" + f.second : "");
    var day = options.timeOnly ? "" : f.year + "-" + f.month + "-" + f.day + " ";
    return day + time + " " + label(date, f);
  }

  window.portalTime = {zone: pageZone, format: format, label: function (when) {
    var date = typeof when === "number" ? new Date(when * 1000) : new Date(when);
    return label(date, fields(date));
  }};
})();
