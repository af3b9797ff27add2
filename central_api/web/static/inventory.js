// The count entry page with a keyboard-wedge scanner: a scan ends with Enter, which moves
// to the next field instead of sending a half-filled form (an optional field may be left
// empty); Enter in the quantity sends it. A wedge that ends with Tab needs nothing: the
// fields are in scanning order.
(function () {
  "use strict";
  document.addEventListener("keydown", function (e) {
    var input = e.target;
    if (!(input instanceof HTMLInputElement) || e.key !== "Enter") { return; }
    var next = input.getAttribute("data-next");
    if (!next) { return; }
    e.preventDefault();
    if (!input.value.trim() && !input.hasAttribute("data-empty-ok")) { return; }
    var field = document.getElementById(next);
    if (field) { field.focus(); field.select(); }
  });
  // After the form comes back with an error (htmx swap), the field in error has the focus
  // (console.js); after a save the page is new and its autofocus field has it.
})();
