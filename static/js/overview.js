/* Project overview: the analyses come from the API, with this project in X-Project-Id.
   Same-origin fetch: the session cookie authenticates it. Built with DOM APIs and
   textContent only, so nothing from the API is ever parsed as HTML. */
(function () {
  "use strict";

  var root = document.querySelector("[data-analyses]");
  if (!root) return;
  var projectId = root.getAttribute("data-project-id");
  var endpoint = root.getAttribute("data-endpoint");
  var body = root.querySelector("[data-analyses-body]");
  var more = root.querySelector("[data-analyses-more]");
  var errorMessage = root.querySelector("[data-error-message]");
  var refreshButton = root.querySelector("[data-analyses-refresh]");
  var status = document.querySelector("[data-analyses-status]");

  /* A focused button in a block that hides (Try again) hands the focus to Refresh, the same
     action: hidden, it dropped the focus to <body> (an accessibility audit, WCAG 2.4.3). */
  function show(state) {
    root.querySelectorAll("[data-state]").forEach(function (element) {
      var hide = element.getAttribute("data-state") !== state;
      if (hide && element.contains(document.activeElement) && refreshButton) refreshButton.focus();
      element.hidden = hide;
    });
    root.setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  /* Said after a reload the user asked for, not on the page's own first load. */
  function tell(text, asked) {
    if (status && asked) status.textContent = text;
  }

  function relative(iso) {
    var then = Date.parse(iso);
    if (isNaN(then)) return "";
    var seconds = Math.round((Date.now() - then) / 1000);
    if (seconds < 60) return "just now";
    /* As the server's `relative` says it (Django's timesince): a month is 30 days, at most
       11 of them — 360 to 364 days ago read "12 months ago" (a dates audit). */
    var units = [["year", 31536000, Infinity], ["month", 2592000, 11], ["week", 604800, Infinity],
      ["day", 86400, Infinity], ["hour", 3600, Infinity], ["minute", 60, Infinity]];
    for (var i = 0; i < units.length; i++) {
      var count = Math.min(Math.floor(seconds / units[i][1]), units[i][2]);
      if (count >= 1) return count + " " + units[i][0] + (count === 1 ? "" : "s") + " ago";
    }
    return "just now";
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // "6 Dec 2026, 09:24 UTC", as the server writes a time's tooltip (`utc_text`).
  function utcText(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.getUTCDate() + " " + MONTHS[d.getUTCMonth()] + " " + d.getUTCFullYear() + ", " +
      two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + " UTC";
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function creator(createdBy) {
    if (!createdBy) return "—";
    if (createdBy.type === "key") return (createdBy.prefix || "API key") + "…";
    return createdBy.email || "—";
  }

  function render(results) {
    body.textContent = "";
    results.forEach(function (analysis) {
      var row = document.createElement("tr");
      cell(row, analysis.title || "Untitled", "cell-name");
      var status = cell(row, "");
      var badge = document.createElement("span");
      badge.className = "badge badge-status-" + String(analysis.status || "").replace(/[^a-z_-]/g, "");
      badge.textContent = analysis.status || "unknown";
      status.appendChild(badge);
      cell(row, creator(analysis.createdBy));
      var created = cell(row, "", "cell-nowrap");
      var time = document.createElement("time");
      /* HTML's date-time takes at most three fractional digits (the API writes six). */
      var moment = new Date(analysis.createdAt || "");
      time.dateTime = isNaN(moment.getTime()) ? "" : moment.toISOString();
      time.title = utcText(analysis.createdAt);
      time.textContent = relative(analysis.createdAt);
      /* The exact time as text too, as the server's `when` tag writes it: a tooltip is a
         mouse's only. */
      var exact = document.createElement("span");
      exact.className = "visually-hidden";
      exact.textContent = " (" + time.title + ")";
      time.appendChild(exact);
      created.appendChild(time);
      cell(row, String((analysis.followUps || []).length), "num");
      body.appendChild(row);
    });
  }

  function describe(response, payload) {
    if (response.status === 401) return "Your session has ended. Reload the page to log in again.";
    if (response.status === 403) return "Your role cannot read analyses of this project.";
    var error = payload && payload.error;
    return (error && error.message) || "The server answered " + response.status + ". Try again.";
  }

  /* A 401 may be an access token that expired while the computer slept (its tab's timers
     stopped): the session refreshes once, then the list is asked for again (found by a
     multi-tab audit: "Your session has ended" while it went on). `asked`: a Refresh or Try
     again, whose result is said. */
  function load(refreshed, asked) {
    if (status) status.textContent = "";
    show("loading");
    fetch(endpoint + "?limit=50", {
      method: "GET",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-Project-Id": projectId }
    }).then(function (response) {
      if (response.status === 401 && !refreshed && window.sigsentrySession) {
        return window.sigsentrySession.refresh().then(function (alive) {
          if (alive) {
            load(true, asked);
          } else {
            errorMessage.textContent = describe(response, null);
            show("error");
          }
        });
      }
      return response.json().catch(function () { return null; }).then(function (payload) {
        if (!response.ok || !payload || !Array.isArray(payload.results)) {
          errorMessage.textContent = describe(response, payload);
          show("error");
          return;
        }
        if (payload.results.length === 0) {
          show("empty");
          tell("No analyses in this project yet", asked);
          return;
        }
        render(payload.results);
        more.hidden = !payload.next;
        show("list");
        var count = payload.results.length;
        tell((payload.next ? "The latest " : "") + count + " analys" + (count === 1 ? "is" : "es") + " loaded", asked);
      });
    }, function () {
      errorMessage.textContent = "The network request failed. Check your connection and try again.";
      show("error");
    });
  }

  root.querySelectorAll("[data-analyses-reload]").forEach(function (button) {
    button.addEventListener("click", function () {
      load(false, true);
    });
  });
  load(false, false);
})();
