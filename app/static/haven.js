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
  var aliveUrl = body.getAttribute("data-alive-url");
  if (seconds > 0 && lockUrl) {
    var timer = null;
    // Activity in the page also tells the server (at most once a minute, or every third of
    // a shorter timeout), so a long form being filled in is not signed out under the user.
    var every = Math.max(1, Math.min(60, seconds / 3)) * 1000;
    var told = Date.now();
    var tell = function () {
      var token = document.querySelector("input[name=csrf_token]");
      if (!aliveUrl || !window.fetch || Date.now() - told < every) { return; }
      told = Date.now();
      window.fetch(aliveUrl, {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: token ? { "X-CSRFToken": token.value } : {}
      }).catch(function () { /* offline: the lock still runs here */ });
    };
    // The warning before the lock (issue 16): shown, announced to screen readers (the live
    // region is in the page from the start, so the change is read), its button focused so
    // one key keeps the session; any activity hides it again and gives the focus back.
    var warnSeconds = parseInt(body.getAttribute("data-idle-warn-seconds") || "0", 10);
    var warning = document.getElementById("idle-warning");
    var live = document.getElementById("idle-live");
    var stay = document.getElementById("idle-stay");
    var warnTimer = null;
    var focusBefore = null;
    var warn = function () {
      if (!warning || !warning.hidden) { return; }
      focusBefore = document.activeElement;
      warning.hidden = false;
      if (live) { live.textContent = document.getElementById("idle-warning-text").textContent; }
      if (stay) { stay.focus(); }
    };
    var unwarn = function () {
      if (!warning || warning.hidden) { return; }
      warning.hidden = true;
      if (live) { live.textContent = ""; }
      if (focusBefore && focusBefore !== document.body && focusBefore.focus) { focusBefore.focus(); }
      focusBefore = null;
    };
    var reset = function () {
      if (timer) { window.clearTimeout(timer); }
      if (warnTimer) { window.clearTimeout(warnTimer); }
      timer = window.setTimeout(function () { leave(lockUrl); }, seconds * 1000);
      if (warnSeconds > 0 && warnSeconds < seconds) {
        warnTimer = window.setTimeout(warn, (seconds - warnSeconds) * 1000);
      }
      unwarn();
      tell();
    };
    if (stay) { stay.addEventListener("click", reset); }
    ["pointerdown", "keydown", "touchstart", "scroll", "input"].forEach(function (name) {
      window.addEventListener(name, reset, { passive: true });
    });
    reset();
  }
  // Pages coming back from the back/forward cache must not show data after a sign-out.
  window.addEventListener("pageshow", function (event) { if (event.persisted) { window.location.reload(); } });
})();
