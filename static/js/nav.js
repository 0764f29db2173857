/* The main nav on a narrow screen: hidden behind the menu button, which opens and closes it. */
(function () {
  "use strict";
  var button = document.getElementById("nav-toggle");
  var topbar = document.querySelector(".topbar");
  if (!button || !topbar) return;
  button.addEventListener("click", function () {
    var open = topbar.classList.toggle("nav-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && topbar.classList.contains("nav-open")) {
      topbar.classList.remove("nav-open");
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
})();
