// Refreshes every element with data-src every data-every seconds, from the server's own
// HTML fragment. A fragment answering 401 (the session ended) reloads the page, which then
// goes to the login form.
(function () {
  "use strict";
  function refresh(el) {
    var every = Math.max(1, parseFloat(el.getAttribute("data-every")) || 5) * 1000;
    function tick() {
      fetch(el.getAttribute("data-src"), {credentials: "same-origin", cache: "no-store"})
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          if (html !== null) { el.innerHTML = html; el.classList.remove("stale"); }
          window.setTimeout(tick, every);
        })
        .catch(function () { el.classList.add("stale"); window.setTimeout(tick, every); });
    }
    window.setTimeout(tick, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-src]").forEach(refresh);
  });
})();
