/* Live updates of the agent-facing CRM (docs/crm.md): one WebSocket to /ws/live/, reconnected with backoff.
   Pages re-read what changed from the server, so a page that was disconnected catches up on reconnect. */
(function () {
  "use strict";
  var stateDot = document.querySelector("[data-live-state]");
  var inbox = document.querySelector("[data-inbox]");
  var conversation = document.querySelector("[data-conversation-page]");
  var dashboard = document.querySelector("[data-dashboard]");
  var delay = 1000, socket = null, pingTimer = null;

  function setState(cls) { if (stateDot) { stateDot.className = "live-state " + cls; } }

  function debounce(fn, ms) {
    var timer = null, running = false, again = false;
    function run() {
      if (running) { again = true; return; }
      running = true;
      Promise.resolve(fn()).catch(function () {}).then(function () {
        running = false;
        if (again) { again = false; schedule(); }
      });
    }
    function schedule() { clearTimeout(timer); timer = setTimeout(run, ms); }
    return schedule;
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      if (r.status === 401 || r.status === 403 || r.redirected) { location.reload(); throw new Error("auth"); }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }

  function withParam(url, key, value) {
    var u = new URL(url, location.href);
    u.searchParams.set(key, value);
    return u.pathname + u.search;
  }

  // -- inbox: re-read the rows and the tab counts --------------------------------------------------------------
  var refreshInbox = debounce(function () {
    return getJSON(withParam(location.href, "fragment", "rows")).then(function (data) {
      inbox.querySelector("[data-inbox-rows]").innerHTML = data.rows;
      Object.keys(data.counts).forEach(function (key) {
        var badge = inbox.querySelector('[data-count="' + key + '"]');
        if (badge) { badge.textContent = data.counts[key]; }
      });
    });
  }, 150);

  // -- conversation: messages new or changed since the cursor, and the header when its state changed ---------
  var convId = conversation && conversation.getAttribute("data-conversation-page");
  var convUrl = conversation && conversation.getAttribute("data-url");
  var list = conversation && conversation.querySelector("[data-messages]");
  var history = conversation && conversation.querySelector(".history");

  function scrollToEnd() { if (history) { history.scrollTop = history.scrollHeight; } }

  var refreshMessages = debounce(function () {
    var cursor = conversation.getAttribute("data-cursor");
    var url = convUrl + "?fragment=messages&since=" + encodeURIComponent(cursor);
    return getJSON(url).then(function (data) {
      var nearEnd = history && history.scrollHeight - history.scrollTop - history.clientHeight < 80;
      data.items.forEach(function (item) {
        var tmp = document.createElement("ol");
        tmp.innerHTML = item.html.trim();
        var fresh = tmp.firstElementChild;
        var old = document.getElementById("m" + item.id);
        var last = list.lastElementChild;
        if (old) {
          old.replaceWith(fresh);
        } else if (!last || item.id > Number(last.getAttribute("data-message"))) {
          list.appendChild(fresh);  // a new message; a change to one older than the page shows is not ours
        }
      });
      conversation.setAttribute("data-cursor", data.cursor);
      if (data.items.length && nearEnd) { scrollToEnd(); }
    });
  }, 50);

  var refreshHeader = debounce(function () {
    return getJSON(convUrl + "?fragment=header").then(function (data) {
      conversation.querySelector("[data-conversation-header]").innerHTML = data.header;
      setUpSnooze();
      var composer = conversation.querySelector("[data-composer]");
      var drafts = Array.prototype.some.call(composer.querySelectorAll("textarea"), function (t) {
        return t.value.trim() !== "";
      });
      if (!drafts) { composer.innerHTML = data.composer; setUpComposer(); }  // never lose what is being written
    });
  }, 150);

  var refreshDashboard = debounce(function () {
    return getJSON(withParam(dashboard.getAttribute("data-url"), "fragment", "panel")).then(function (data) {
      dashboard.querySelector("[data-dashboard-panel]").innerHTML = data.panel;
    });
  }, 300);

  function showAvailability(status) {
    document.querySelectorAll(".availability .avail").forEach(function (b) {
      b.setAttribute("aria-pressed", b.value === status ? "true" : "false");
    });
  }

  function handle(event) {
    var data = event.data || {};
    if (event.type === "agent.availability" && String(data.agent) === document.body.getAttribute("data-user")) {
      showAvailability(data.status);
    }
    if (event.type.indexOf("session.") === 0) {  // a number's connection state: only the dashboard shows it
      if (dashboard) { refreshDashboard(); }
      return;
    }
    if (inbox) { refreshInbox(); }
    if (dashboard) { refreshDashboard(); }
    if (conversation && String(data.conversation) === convId) {
      if (event.type === "message.created" || event.type === "message.status") { refreshMessages(); }
      if (event.type.indexOf("conversation.") === 0) { refreshHeader(); refreshMessages(); }
    }
  }

  function catchUp() {
    if (inbox) { refreshInbox(); }
    if (dashboard) { refreshDashboard(); }
    if (conversation) { refreshMessages(); refreshHeader(); }
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/live/");
    setState("connecting");
    socket.onmessage = function (msg) {
      var event;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      if (event.type === "hello") {
        setState("on");
        delay = 1000;
        // What happened while the socket was down, or between the page's render and the socket joining.
        catchUp();
        return;
      }
      handle(event);
    };
    socket.onclose = function (e) {
      setState("off");
      clearInterval(pingTimer);
      if (e.code === 4401) { location.reload(); return; }  // logged out elsewhere
      setTimeout(connect, delay + Math.random() * 500);
      delay = Math.min(delay * 2, 30000);
    };
    socket.onopen = function () {
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        if (socket.readyState === 1) { socket.send('{"type":"ping"}'); }
      }, 20000);
    };
  }

  // -- availability without a page load ------------------------------------------------------------------------
  document.querySelectorAll("[data-availability] .avail").forEach(function (button) {
    button.addEventListener("click", function (e) {
      e.preventDefault();
      var form = button.form, body = new FormData(form);
      body.set("status", button.value);
      fetch(form.action, {method: "POST", body: body, credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { if (r.ok) { showAvailability(button.value); } });
    });
  });

  // -- composer: quick replies (/shortcut) and template parameters ---------------------------------------------
  function setUpComposer() {
    var area = document.querySelector("[data-quick-replies]");
    var box = document.querySelector("[data-suggestions]");
    if (area && box) {
      var replies = {};
      try {
        replies = Object.assign(Object.create(null), JSON.parse(area.getAttribute("data-quick-replies")));
      } catch (e) { replies = Object.create(null); }  // no prototype: /constructor is not a quick reply
      var word = function () {
        var upto = area.value.slice(0, area.selectionStart);
        var m = upto.match(/(^|\s)\/([\w-]*)$/);
        return m ? {text: m[2], start: upto.length - m[2].length - 1} : null;
      };
      var insert = function (key, at) {
        var end = at + key.length + 1;
        area.value = area.value.slice(0, at) + replies[key] + area.value.slice(end);
        area.selectionStart = area.selectionEnd = at + replies[key].length;
        box.hidden = true;
        area.focus();
      };
      area.addEventListener("input", function () {
        var w = word();
        box.innerHTML = "";
        if (!w) { box.hidden = true; return; }
        var keys = Object.keys(replies).filter(function (k) { return k.indexOf(w.text) === 0; });
        keys.forEach(function (k) {
          var li = document.createElement("li"), b = document.createElement("button");
          b.type = "button";
          b.textContent = "/" + k + " — " + replies[k].slice(0, 60);
          b.addEventListener("click", function () { insert(k, w.start); });
          li.appendChild(b);
          box.appendChild(li);
        });
        box.hidden = keys.length === 0;
      });
      area.addEventListener("keydown", function (e) {
        var w = word();
        if (w && replies[w.text] && (e.key === "Tab" || e.key === " " || e.key === "Enter")) {
          e.preventDefault();
          insert(w.text, w.start);
        } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          area.form.requestSubmit();
        }
      });
    }
    var form = document.querySelector("[data-template-form]");
    var select = form && form.querySelector("select[name=template]");
    if (select) {
      var templates = JSON.parse(form.getAttribute("data-templates") || "[]");
      var render = function () {
        var t = templates.filter(function (x) { return String(x.id) === select.value; })[0];
        form.querySelector("[data-template-body]").textContent = t ? t.body : "";
        var params = form.querySelector("[data-template-params]");
        params.innerHTML = "";
        (t ? t.params : []).forEach(function (n) {
          var label = document.createElement("label"), input = document.createElement("input");
          label.setAttribute("for", "param_" + n);
          label.textContent = "{{" + n + "}}";
          input.id = input.name = "param_" + n;
          input.required = true;
          params.appendChild(label);
          params.appendChild(input);
        });
      };
      select.addEventListener("change", render);
      render();
    }
  }

  function setUpSnooze() {
    var until = document.getElementById("snooze-until"), custom = document.getElementById("snooze-custom");
    if (!until || !custom) { return; }
    var sync = function () { custom.hidden = until.value !== "custom"; custom.required = !custom.hidden; };
    until.addEventListener("change", sync);
    sync();
  }

  // Waits and ages grow by themselves: the dashboard re-reads itself every 30 s even when nothing is published.
  if (dashboard) { setInterval(refreshDashboard, 30000); }

  setUpComposer();
  setUpSnooze();
  scrollToEnd();
  connect();
})();
