/* Keeps a dashboard tab's session alive: a few minutes before the access cookie
   expires, POST /v1/auth/refresh (the refresh cookie authenticates it; the CSRF
   token proves the page is ours). The tokens stay in HttpOnly cookies: this
   script never sees them. When the session cannot be extended any more, the
   page says so instead of failing on the next click.
   Every tab of a session plans its refresh for the same moment. They take turns (a Web
   Lock), and a tab whose turn comes just after another tab refreshed takes that refresh
   as its own (the cookies are every tab's) instead of presenting the token it rotated,
   which the server refuses (401, an error in the console: found by a multi-tab audit).
   A tab refused all the same (a browser without Web Locks, another window) tries again a
   few seconds later, spread, before it says the session has ended.
   A timer does not run while the computer sleeps: when the tab is seen again (shown,
   focused, back online, restored from the history), a refresh that is due is made then.
   Other scripts ask for one with `window.sigsentrySession.refresh()` (a Promise of
   whether the session goes on): an API call answered 401 tries once more after it. */
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
  /* A refresh another tab made less than this long ago is this tab's too. */
  var SHARED_FOR_MS = 30 * 1000;
  /* A refresh waits this long for its answer, then counts as failed (tried again in a
     minute): it holds every tab's turn meanwhile (a review: on a stalled network one
     tab's refresh kept the others waiting for good). */
  var ANSWER_WITHIN_MS = 15 * 1000;
  var LOCK_NAME = "sigsentry-session-refresh";
  var SHARED_KEY = "sigsentry.session.refreshedAt";
  if (isNaN(expiresAt)) return;
  /* The server's times on this tab's clock: planned on a clock minutes slow, the refresh
     came after the access token had expired (a time audit). */
  var serverNow = Date.parse(body.getAttribute("data-server-now") || "");
  var skewMs = isNaN(serverNow) ? 0 : serverNow - Date.now();
  expiresAt -= skewMs;
  endsAt -= skewMs;
  var timer = null;
  var inFlight = null;
  var ended = false;

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function sessionEnded() {
    ended = true;
    var notice = document.querySelector("[data-session-notice]");
    if (!notice) return;
    notice.hidden = false;
    document.querySelectorAll("dialog[open]").forEach(function (dialog) {
      if (isModal(dialog)) tellInDialog(dialog, notice);
    });
  }

  /* An open modal dialog (a secret shown once, a key's Roll) leaves the page around it out
     of the accessibility tree, the notice's alert too: nothing was said (an accessibility
     audit). The dialog gets its own copy, an alert that is said and seen where the user is. */
  function tellInDialog(dialog, notice) {
    var copy = notice.cloneNode(true);
    copy.removeAttribute("data-session-notice");
    copy.classList.add("session-notice-in-dialog");
    var inside = dialog.firstElementChild || dialog;
    inside.insertBefore(copy, inside.firstChild);
  }

  function isModal(dialog) {
    try {
      return dialog.matches(":modal");
    } catch (error) {
      return false; /* a browser without :modal: its dialogs leave the page in the tree */
    }
  }

  function later(work, delay) {
    window.clearTimeout(timer);
    timer = window.setTimeout(work, Math.max(0, Math.min(delay, MAX_TIMER_MS)));
  }

  /* Not once the session's 30-day cap is reached: nothing is left to extend (a review:
     every focus then rotated the refresh token for nothing). */
  function due() {
    return !ended && !capped() && Date.now() >= expiresAt - AHEAD_MS;
  }

  /* Within a second: the access token's expiry is written in whole seconds. */
  function capped() {
    return !isNaN(endsAt) && expiresAt >= endsAt - 1000;
  }

  /* The next refresh, or at the session's 30-day cap, which it cannot pass, the notice
     when it ends. */
  function plan() {
    if (capped()) {
      later(sessionEnded, expiresAt - Date.now());
    } else {
      later(refresh, expiresAt - AHEAD_MS - Date.now());
    }
  }

  /* The session was extended at `refreshedAt` (by this tab or another): plan the next. */
  function extended(refreshedAt) {
    var next = refreshedAt + lifetimeMs;
    expiresAt = isNaN(endsAt) ? next : Math.min(next, endsAt);
    plan();
  }

  function sharedRefreshedAt() {
    try {
      return parseInt(window.localStorage.getItem(SHARED_KEY) || "", 10);
    } catch (error) {
      return NaN; /* storage turned off: every tab refreshes for itself */
    }
  }

  function share(refreshedAt) {
    try {
      window.localStorage.setItem(SHARED_KEY, String(refreshedAt));
    } catch (error) {
      /* storage turned off or full: the other tabs retry after a 401, as before */
    }
  }

  function inTurn(work) {
    if (navigator.locks && navigator.locks.request) {
      return navigator.locks.request(LOCK_NAME, work);
    }
    return work();
  }

  /* A refresh whose answer never came (the connection dropped, or 15 s passed) may have
     rotated the pair on the server: sent again a minute later, the old token would end the
     session as stolen. A request for this page at once, within the server's race window,
     brings the session's current cookies (the dashboard's rejoin, accounts.services), or
     a rotation if there was none. Resolves to "ok" when the server answered it, "ended"
     when it sent the page to the login (the session is over). */
  function heal() {
    return fetch(window.location.pathname, {
      method: "HEAD",
      credentials: "same-origin",
      redirect: "manual"
    }).then(function (response) {
      return response.type === "opaqueredirect" ? "ended" : "ok";
    }, function () {
      return "failed";
    });
  }

  /* One POST; resolves to "ok", "raced" (401: another request rotated the token a moment
     ago), "ended" (400, 401 or 403 for good), "lost" (no answer: `heal`) or "failed" (an
     error answer: to try again later). */
  function post() {
    var abort = window.AbortController ? new AbortController() : null;
    var giveUp = abort && window.setTimeout(function () {
      abort.abort();
    }, ANSWER_WITHIN_MS);
    return fetch("/v1/auth/refresh", {
      method: "POST",
      credentials: "same-origin",
      signal: abort ? abort.signal : undefined,
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": csrfToken()
      },
      body: "{}"
    }).then(function (response) {
      window.clearTimeout(giveUp);
      if (response.ok) return "ok";
      if (response.status === 401) return "raced";
      /* 400: no refresh cookie any more (a logout in another tab deleted it). */
      if (response.status === 400 || response.status === 403) return "ended";
      return "failed";
    }, function () {
      window.clearTimeout(giveUp);
      return "lost";
    });
  }

  function attempt(racesLeft) {
    return inTurn(function () {
      var shared = sharedRefreshedAt();
      if (!isNaN(shared) && Date.now() - shared < SHARED_FOR_MS && shared + lifetimeMs > expiresAt) {
        extended(shared);
        return "ok";
      }
      return post().then(function (outcome) {
        return outcome === "lost" ? heal() : outcome;
      }).then(function (outcome) {
        if (outcome === "ok") {
          var now = Date.now();
          share(now);
          extended(now);
        }
        return outcome;
      });
    }).then(function (outcome) {
      if (outcome === "raced" && racesLeft > 0) {
        return new Promise(function (resolve) {
          window.setTimeout(resolve, RACE_RETRY_MS * (1 + Math.random()));
        }).then(function () {
          return attempt(racesLeft - 1);
        });
      }
      if (outcome === "raced" || outcome === "ended") {
        sessionEnded();
        return false;
      }
      if (outcome === "failed") {
        later(refresh, RETRY_MS);
        return false;
      }
      return true;
    });
  }

  /* A refresh now, or the one this tab has in flight. */
  function refresh() {
    if (ended) return Promise.resolve(false);
    if (!inFlight) {
      inFlight = attempt(RACE_RETRIES).then(function (alive) {
        inFlight = null;
        return alive;
      });
    }
    return inFlight;
  }

  function refreshIfDue() {
    if (due() && !inFlight) refresh();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") refreshIfDue();
  });
  window.addEventListener("focus", refreshIfDue);
  window.addEventListener("online", refreshIfDue);
  window.addEventListener("pageshow", refreshIfDue);

  window.sigsentrySession = { refresh: refresh };
  plan();
})();
