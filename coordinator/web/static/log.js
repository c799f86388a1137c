// Kiln's live log: follows a job's log through server-sent events and
// appends each line. The server sends text and class names only; they are
// put into the page with textContent and className, never as HTML.
"use strict";
(function () {
  function start() {
    var log = document.getElementById("log");
    if (!log || log.dataset.done === "true" || !window.EventSource) {
      return;
    }
    var status = document.getElementById("log-status");
    var wasLive = log.dataset.state === "queued" || log.dataset.state === "running";
    var src = new EventSource(log.dataset.events + "?offset=" + encodeURIComponent(log.dataset.offset || "0"));

    function say(text) {
      if (status) {
        status.textContent = text;
      }
    }
    function atBottom() {
      return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40;
    }
    function append(lines) {
      if (!lines || lines.length === 0) {
        return;
      }
      var follow = atBottom();
      var frag = document.createDocumentFragment();
      lines.forEach(function (line) {
        (line || []).forEach(function (seg) {
          if (seg.c) {
            var span = document.createElement("span");
            span.className = seg.c;
            span.textContent = seg.t;
            frag.appendChild(span);
          } else {
            frag.appendChild(document.createTextNode(seg.t));
          }
        });
        frag.appendChild(document.createTextNode("\n"));
      });
      log.appendChild(frag);
      if (follow) {
        window.scrollTo(0, document.documentElement.scrollHeight);
      }
    }

    src.onopen = function () {
      say("following the build while it runs");
    };
    src.onmessage = function (e) {
      append(JSON.parse(e.data).lines);
      log.dataset.offset = e.lastEventId;
    };
    src.addEventListener("end", function (e) {
      var m = JSON.parse(e.data);
      src.close();
      append(m.lines);
      log.dataset.offset = e.lastEventId;
      log.dataset.done = "true";
      var state = document.getElementById("job-state");
      if (state) {
        state.textContent = m.state;
        state.className = "state s-" + m.state;
      }
      say("the job has finished: " + m.state);
      if (wasLive && status) {
        var a = document.createElement("a");
        a.href = window.location.pathname;
        a.textContent = "reload for its record and artifacts";
        status.appendChild(document.createTextNode(": "));
        status.appendChild(a);
      }
    });
    src.onerror = function () {
      if (src.readyState !== EventSource.CLOSED) {
        say("connection lost, reconnecting…");
      }
    };
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
