/* Safe-hours rows on the profile form: "Monday to Friday" / "Every day" / "No days" tick
   the weekday boxes of their row. Without JavaScript the buttons stay hidden and the boxes
   are ticked one by one. */
(function () {
  "use strict";
  document.querySelectorAll("[data-safe-window]").forEach(function (row) {
    var shortcuts = row.querySelector(".day-shortcuts");
    if (!shortcuts) { return; }
    shortcuts.hidden = false;
    shortcuts.querySelectorAll("button[data-days]").forEach(function (button) {
      button.addEventListener("click", function () {
        var wanted = button.getAttribute("data-days").split(",").filter(Boolean);
        row.querySelectorAll("input[type=checkbox]").forEach(function (box) {
          box.checked = wanted.indexOf(box.value) !== -1;
        });
      });
    });
  });
})();
