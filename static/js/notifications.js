/* The header's bell (templates/notifications/_bell.html): its unread count follows the live socket
 * (live.js turns each server event into a "portal:<event>" DOM event). "notification" carries the new
 * count (and what is new), "notification.read" the count after something was marked read elsewhere;
 * after a reconnect ("hello") the count is fetched again, as events meanwhile were missed. */
(function () {
  "use strict";
  var bell = document.getElementById("notification-bell");
  var count = document.getElementById("notification-count");
  if (!bell || !count) return;

  function show(unread) {
    unread = Math.max(0, parseInt(unread, 10) || 0);
    count.textContent = String(unread);
    count.dataset.count = String(unread);
    count.hidden = unread === 0;
    bell.setAttribute("aria-label", "Notifications: " + unread + " unread");
    document.body.dispatchEvent(new CustomEvent("notifications-changed", {detail: {unread: unread}}));
  }

  function update(e) {
    var data = e.detail || {};
    if (data.unread != null) show(data.unread);
    if (data.title) bell.title = "New: " + data.title;
  }

  document.addEventListener("portal:notification", update);
  document.addEventListener("portal:notification.read", update);
  var connected = false;
  document.addEventListener("portal:hello", function () {
    if (!connected) { connected = true; return; }  // the page's own count is fresh on the first connect
    fetch(bell.dataset.unreadUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) show(data.unread); })
      .catch(function () {});
  });
})();
