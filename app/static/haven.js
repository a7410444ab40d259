/* Haven: quick exit and idle lock. No survivor data is ever written to browser storage. */
(function () {
  "use strict";
  function leave(url) {
    // replace(): the Back button must not bring the previous page back.
    window.location.replace(url);
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-quick-exit]");
    if (link) { event.preventDefault(); leave(link.getAttribute("href")); }
  });
  var body = document.body;
  var seconds = parseInt(body.getAttribute("data-idle-seconds") || "0", 10);
  var lockUrl = body.getAttribute("data-lock-url");
  if (seconds > 0 && lockUrl) {
    var timer = null;
    var reset = function () {
      if (timer) { window.clearTimeout(timer); }
      timer = window.setTimeout(function () { leave(lockUrl); }, seconds * 1000);
    };
    ["pointerdown", "keydown", "touchstart", "scroll", "input"].forEach(function (name) {
      window.addEventListener(name, reset, { passive: true });
    });
    reset();
  }
  // Pages coming back from the back/forward cache must not show data after a sign-out.
  window.addEventListener("pageshow", function (event) { if (event.persisted) { window.location.reload(); } });
})();
