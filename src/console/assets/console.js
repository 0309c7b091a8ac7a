// ThreatPilot console: the only script the console runs. It keeps pages
// live without inline code: parts marked data-live are re-read from the
// server when the pipeline changes, the job tail is appended from its
// event stream, and countdowns and relative times tick. Text from the
// server is only ever set as textContent or taken from the server's own
// escaped HTML.
(function () {
  "use strict";

  function left(ms) {
    if (ms <= 0) return "expired";
    var s = Math.floor(ms / 1000);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (s < 60) return s + "s left";
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s left";
    return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m left";
  }

  function ago(ms) {
    var s = Math.round(ms / 1000);
    if (s < 0) return "in " + (-s) + "s";
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return null;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-until]").forEach(function (el) {
      var ms = Number(el.getAttribute("data-until")) - now;
      el.textContent = left(ms);
      el.classList.toggle("expired", ms <= 0);
    });
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (isNaN(t)) return;
      var a = ago(now - t);
      if (a !== null) el.textContent = a;
    });
  }

  var refreshing = false;
  var again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          // a field someone is typing in is not replaced under them
          if (fresh && !el.contains(document.activeElement)) {
            el.replaceWith(document.importNode(fresh, true));
          }
        });
        tick();
      })
      .catch(function () {})
      .finally(function () {
        refreshing = false;
        if (again) { again = false; setTimeout(refresh, 300); }
      });
  }

  function follow() {
    var src = document.body.getAttribute("data-events");
    if (!src || !document.querySelector("[data-live]")) return;
    var es = new EventSource(src);
    var timer = null;
    es.addEventListener("changed", function () {
      if (timer) return;
      timer = setTimeout(function () { timer = null; refresh(); }, 150);
    });
  }

  function clean(s) {
    return String(s).replace(/[\n\r\t]/g, " ").replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, "");
  }

  function tail() {
    var list = document.querySelector("[data-tail]");
    if (!list) return;
    var seen = {};
    list.querySelectorAll("li[data-key]").forEach(function (li) { seen[li.getAttribute("data-key")] = true; });
    var es = new EventSource(list.getAttribute("data-tail"));
    es.addEventListener("tail", function (e) {
      var t;
      try { t = JSON.parse(e.data); } catch (_) { return; }
      var key = t.at_ms + "|" + clean(t.phase) + "|" + clean(t.text);
      if (seen[key]) return;
      seen[key] = true;
      var li = document.createElement("li");
      li.setAttribute("data-key", key);
      li.className = "new";
      var time = document.createElement("time");
      time.setAttribute("datetime", new Date(t.at_ms).toISOString());
      time.textContent = new Date(t.at_ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
      var badge = document.createElement("span");
      badge.className = "badge b-" + String(t.phase).replace(/[^A-Za-z0-9_]/g, "");
      badge.textContent = clean(t.phase);
      li.appendChild(time);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(badge);
      li.appendChild(document.createTextNode(" " + clean(t.text)));
      list.appendChild(li);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    follow();
    tail();
  });
})();
