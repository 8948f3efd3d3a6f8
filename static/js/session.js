/* Keeps a dashboard tab's session alive: a few minutes before the access cookie
   expires, POST /v1/auth/refresh (the refresh cookie authenticates it; the CSRF
   token proves the page is ours). The tokens stay in HttpOnly cookies: this
   script never sees them. When the session cannot be extended any more, the
   page says so instead of failing on the next click.
   Every tab of a session plans its refresh for the same moment: one wins, and the
   others' refresh tokens were rotated a moment before (401). The winner's new cookies
   are every tab's, so a tab refused tries again a few seconds later (spread, so that
   it does not race the next one) before it says the session has ended. */
(function () {
  "use strict";

  var body = document.body;
  var expiresAt = Date.parse(body.getAttribute("data-session-expires-at") || "");
  var endsAt = Date.parse(body.getAttribute("data-session-ends-at") || "");
  var lifetimeMs = 1000 * parseInt(body.getAttribute("data-session-lifetime") || "0", 10);
  var AHEAD_MS = 5 * 60 * 1000;
  var RETRY_MS = 60 * 1000;
  /* Within the server's race window (accounts.services.REUSE_RACE_WINDOW, 10 s): a
     stale token presented again later than that ends the session as stolen. */
  var RACE_RETRIES = 2;
  var RACE_RETRY_MS = 1500;
  var MAX_TIMER_MS = 0x7fffffff;
  if (isNaN(expiresAt)) return;
  /* The server's times on this tab's clock: planned on a clock minutes slow, the refresh
     came after the access token had expired (a time audit). */
  var serverNow = Date.parse(body.getAttribute("data-server-now") || "");
  var skewMs = isNaN(serverNow) ? 0 : serverNow - Date.now();
  expiresAt -= skewMs;
  endsAt -= skewMs;

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function sessionEnded() {
    var notice = document.querySelector("[data-session-notice]");
    if (notice) notice.hidden = false;
  }

  function schedule(at) {
    var delay = Math.max(0, Math.min(at - AHEAD_MS - Date.now(), MAX_TIMER_MS));
    window.setTimeout(refresh, delay);
  }

  function refresh(racesLeft) {
    if (racesLeft === undefined) racesLeft = RACE_RETRIES;
    fetch("/v1/auth/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": csrfToken()
      },
      body: "{}"
    }).then(function (response) {
      if (response.ok) {
        var next = Date.now() + lifetimeMs;
        expiresAt = isNaN(endsAt) ? next : Math.min(next, endsAt);
        if (expiresAt - AHEAD_MS > Date.now()) {
          schedule(expiresAt);
        } else {
          /* The session's 30-day cap: it cannot be extended, so say so when it ends. */
          window.setTimeout(sessionEnded, Math.max(0, Math.min(expiresAt - Date.now(), MAX_TIMER_MS)));
        }
        return;
      }
      if (response.status === 401 && racesLeft > 0) {
        window.setTimeout(function () {
          refresh(racesLeft - 1);
        }, RACE_RETRY_MS * (1 + Math.random()));
      } else if (response.status === 400 || response.status === 401 || response.status === 403) {
        /* 400: no refresh cookie any more (a logout in another tab deleted it). */
        sessionEnded();
      } else {
        window.setTimeout(refresh, RETRY_MS);
      }
    }, function () {
      window.setTimeout(refresh, RETRY_MS);
    });
  }

  schedule(expiresAt);
})();
