/* FlowStone dashboard: live updates, confirmations, selection, run progress.
 * Vendored with the package; no framework, no CDN. Everything shown comes from the
 * server already escaped (HTML regions) or is written as text (JSON values). */
(function () {
  "use strict";
  var body = document.body;
  var root = body.dataset.root || "";
  var interval = Math.max(0.5, parseFloat(body.dataset.interval || "1")) * 1000;
  var version = body.dataset.version;  // what the hub had published when this page was rendered
  var live = document.getElementById("live");
  var timer = null;
  var busy = false;

  function setLive(on, text) {
    if (!live) { return; }
    live.className = "live " + (on ? "on" : "off");
    live.textContent = text;
  }

  function typing(region) {
    var focused = document.activeElement;
    return focused && region.contains(focused) && focused.matches("input:not([type=checkbox]), select, textarea");
  }

  /* Replace each [data-live] region with its new version from the server, keeping the
   * boxes the user ticked; a region holding the field being typed in waits for the next change. */
  function refresh() {
    timer = null;
    if (busy) { schedule(); return; }
    var regions = document.querySelectorAll("[data-live][id]");
    var run = document.querySelector("[data-run]");
    if (run) { progress(run); }
    if (!regions.length) { return; }
    busy = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (region) {
          var next = fresh.getElementById(region.id);
          if (!next || typing(region)) { return; }
          var ticked = Array.prototype.map.call(region.querySelectorAll("input[type=checkbox]:checked"), function (box) { return box.name + "=" + box.value; });
          region.innerHTML = next.innerHTML;
          region.querySelectorAll("input[type=checkbox]").forEach(function (box) {
            if (ticked.indexOf(box.name + "=" + box.value) >= 0) { box.checked = true; }
          });
        });
      })
      .catch(function () { setLive(false, "offline"); })
      .then(function () { busy = false; });
  }

  function schedule() {
    if (timer === null) { timer = setTimeout(refresh, 100); }
  }

  /* Something changed (or this page may have missed something): refresh, unless the
   * page already shows that version. */
  function changed(seen) {
    if (seen === version) { return; }
    version = seen;
    schedule();
  }

  /* A run's progress from the JSON API, written as text and numbers only. */
  function progress(box) {
    fetch(root + "/api/runs/" + encodeURIComponent(box.dataset.run), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (run) {
        var bar = document.getElementById("run-progress");
        bar.max = Math.max(1, run.total);
        bar.value = run.finished;
        document.getElementById("run-percent").textContent = run.percent + " %";
        document.getElementById("run-counts").textContent =
          run.finished + " / " + run.total + " finished" + (run.failed ? ", " + run.failed + " failed" : "") +
          (run.cancelled ? ", " + run.cancelled + " cancelled" : "");
      });
  }

  /* One event stream per browser, not per tab: browsers open at most six connections
   * to a server over HTTP/1.1, and each stream holds one for good. The tab holding the
   * lock keeps the stream and passes what it hears on to the other tabs; when it closes
   * or navigates away, another tab takes over. */
  var name = "flowstone-live:" + location.host + root;
  var channel = window.BroadcastChannel ? new BroadcastChannel(name) : null;
  var holder = false;
  var state = { on: false, text: "connecting…", version: null };

  function tell(message) { if (channel) { channel.postMessage(message); } }

  function stream() {
    return new Promise(function (release) {
      var source = new EventSource(root + "/events");
      function heard(event) {
        state.version = JSON.parse(event.data).version;
        state.on = true;
        state.text = "live";
        setLive(true, "live");
        tell({ state: state });
        changed(state.version);
      }
      source.addEventListener("connected", heard);
      source.addEventListener("change", heard);
      source.onerror = function () {
        state.on = false;
        state.text = "reconnecting…";
        setLive(false, state.text);
        tell({ state: state });
      };
      window.addEventListener("pagehide", function () { source.close(); release(); }, { once: true });
    });
  }

  function connect() {
    if (!window.EventSource) {
      setLive(false, "polling every " + interval / 1000 + " s");
      setInterval(refresh, interval);
      return;
    }
    if (!channel || !navigator.locks) { stream(); return; }
    channel.onmessage = function (message) {
      var data = message.data || {};
      if (data.ping && holder) { tell({ state: state }); }
      if (!data.state || holder) { return; }
      setLive(data.state.on, data.state.text);
      if (data.state.on) { changed(data.state.version); }
    };
    tell({ ping: true });
    navigator.locks.request(name, function () { holder = true; return stream(); });
  }

  document.addEventListener("submit", function (event) {
    var message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("[data-select-all]")) {
      document.querySelectorAll("input[name=ids][form=bulk]").forEach(function (box) { box.checked = event.target.checked; });
    }
  });

  window.addEventListener("pageshow", function (event) { if (event.persisted) { location.reload(); } });

  var run = document.querySelector("[data-run]");
  if (run) { progress(run); }
  connect();
})();
