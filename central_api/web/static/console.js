// jxc console: the little the pages need beyond htmx. No build step; served by central.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      // Swap a 422 (a form with its errors) like a 200; other errors are not swapped.
      htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "422", swap: true, error: false },
        { code: "[45]..", swap: false, error: true },
      ];
    }
  });

  var banner = function () { return document.getElementById("net-error"); };

  // A lost connection says so; the form is not swapped, so what was typed stays.
  document.addEventListener("htmx:sendError", function () {
    var b = banner(); if (b) { b.hidden = false; }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var b = banner();
    if (b && e.detail && e.detail.successful) { b.hidden = true; }
  });
  // A session that ended meanwhile: sign in again, then come back here.
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail && e.detail.xhr;
    if (xhr && xhr.status === 401) {
      var login = document.body.getAttribute("data-login") || "/console/login";
      window.location.assign(login + "?next=" + encodeURIComponent(location.pathname + location.search));
    } else if (xhr && xhr.responseText && xhr.getResponseHeader("content-type") &&
               xhr.getResponseHeader("content-type").indexOf("text/html") === 0) {
      document.open(); document.write(xhr.responseText); document.close();
    }
  });
  // After a form comes back with errors, take the keyboard to the first field in error.
  // (An outerHTML swap detaches the old target, so look in the document.)
  document.addEventListener("htmx:afterSettle", function () {
    var bad = document.querySelector("main [aria-invalid=true]");
    if (bad) { bad.focus(); }
  });

  // --- rows of a form (barcodes, units): added from a <template>, renumbered ------------
  // Each input names its id's stem in data-id; row i's input gets id "<stem>-<i>" and its
  // label's "for", so every field keeps a label after rows come and go.
  function renumber(container) {
    var rows = container.querySelectorAll(".row");
    rows.forEach(function (row, i) {
      row.querySelectorAll(".field").forEach(function (field) {
        var input = field.querySelector("[data-id]"), label = field.querySelector("label");
        if (!input) { return; }
        input.id = input.getAttribute("data-id") + "-" + i;
        if (label) { label.htmlFor = input.id; }
      });
      var n = row.querySelector("[data-n]"); if (n) { n.textContent = String(i + 1); }
    });
  }
  function addRow(form, kind) {
    var template = form.querySelector("#" + kind + "-row-template");
    var container = form.querySelector("#" + kind + "-rows");
    container.appendChild(template.content.cloneNode(true));
    renumber(container);
    var rows = container.querySelectorAll(".row");
    return rows[rows.length - 1].querySelector("input");
  }
  document.addEventListener("click", function (e) {
    var target = e.target;
    if (!(target instanceof Element)) { return; }
    if (target.matches("[data-add-row]")) {
      addRow(target.closest("form"), target.getAttribute("data-add-row")).focus();
    } else if (target.matches("[data-remove-row]")) {
      var container = target.closest("[data-rows]");
      target.closest(".row").remove();
      renumber(container);
    }
  });
  // A scan into a barcode field ends with Enter: go to the next row (a new one if last),
  // rather than submitting a half-filled form.
  document.addEventListener("keydown", function (e) {
    var input = e.target;
    if (!(input instanceof HTMLInputElement)) { return; }
    if (input.matches("[data-barcode]") && e.key === "Enter") {
      e.preventDefault();
      if (!input.value.trim()) { return; }
      var row = input.closest(".row");
      var next = row.nextElementSibling && row.nextElementSibling.querySelector("[data-barcode]");
      (next || addRow(input.closest("form"), "barcode")).focus();
    }
  });

  // --- a scan that finds nothing: red (the page), a low tone, and the field ready for the
  // next scan (its text selected, so the next scan replaces it) --------------------------
  function missTone() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return; }
      var ctx = new Ctx(), osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "square"; osc.frequency.value = 220; gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.18);
      osc.onended = function () { ctx.close(); };
    } catch (err) { /* a browser without sound still shows the red message */ }
  }
  function afterSearch() {
    if (!document.querySelector("#item-results [data-scan-miss]")) { return; }
    missTone();
    var field = document.querySelector("[data-scan]");
    if (field) { field.focus(); field.select(); }
  }
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.detail && e.detail.target && e.detail.target.id === "item-results") { afterSearch(); }
  });
  document.addEventListener("DOMContentLoaded", afterSearch);

  // --- scan fields: a keyboard wedge may end a scan with Tab instead of Enter ------------
  // Keys that arrive faster than a person types (< 50 ms apart, 4 or more) are a scan; a
  // Tab right after such a burst submits the search instead of moving the focus.
  // The gap can be set per field (data-scan-gap, in ms) for a scanner that types slowly.
  var burst = { field: null, count: 0, last: 0 };
  document.addEventListener("keydown", function (e) {
    var input = e.target;
    if (!(input instanceof HTMLInputElement) || !input.matches("[data-scan]")) { return; }
    var gap = Number(input.dataset.scanGap) || 50;
    var now = performance.now();
    if (e.key === "Tab" && !e.shiftKey && burst.field === input && burst.count >= 4 && now - burst.last < 2 * gap) {
      e.preventDefault();
      input.form.requestSubmit();
      burst.count = 0;
      return;
    }
    if (e.key.length === 1) {
      burst.count = (burst.field === input && now - burst.last < gap) ? burst.count + 1 : 1;
      burst.field = input; burst.last = now;
    }
  });

  // --- the import form: the kind picks the upload's address; progress while it runs ----
  document.addEventListener("change", function (e) {
    var select = e.target;
    if (!(select instanceof HTMLSelectElement) || !select.matches("[data-import-kind]")) { return; }
    var form = select.closest("form");
    form.setAttribute("action", select.value);
    form.setAttribute("hx-post", select.value);
    if (window.htmx) { htmx.process(form); }
  });
  function progressOf(form) { return form && form.querySelector("#import-progress"); }
  document.addEventListener("htmx:beforeRequest", function (e) {
    var box = progressOf(e.target.closest && e.target.closest("[data-import]"));
    if (!box) { return; }
    box.hidden = false;
    box.querySelector("[data-upload]").removeAttribute("value");
    box.querySelector("[data-uploading]").hidden = false;
    box.querySelector("[data-checking]").hidden = true;
    document.getElementById("import-outcome").innerHTML = "";
  });
  document.addEventListener("htmx:xhr:progress", function (e) {
    var box = progressOf(e.target.closest && e.target.closest("[data-import]"));
    if (!box || !e.detail || !e.detail.lengthComputable) { return; }
    var bar = box.querySelector("[data-upload]");
    bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
    if (e.detail.loaded >= e.detail.total) {
      // Sent: now central checks and writes; the bar runs without an end until it answers.
      bar.removeAttribute("value");
      box.querySelector("[data-uploading]").hidden = true;
      box.querySelector("[data-checking]").hidden = false;
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var box = progressOf(e.target.closest && e.target.closest("[data-import]"));
    if (box) { box.hidden = true; }
  });

  // A menu group closes when another opens or a click lands outside it.
  document.addEventListener("click", function (e) {
    document.querySelectorAll(".top nav details[open]").forEach(function (group) {
      if (!group.contains(e.target)) { group.open = false; }
    });
  });
})();
