/* SigSentry dashboard behaviour, hooked on data-* attributes (the CSP forbids inline code). */
(function () {
  "use strict";

  /* Forms that destroy something ask first, in the page's own dialog
     (templates/includes/confirm_dialog.html): <form data-confirm="Revoke …?"
     data-confirm-detail="What happens then." data-confirm-action="Revoke key">. Not
     window.confirm(): a browser told to stop this page's dialogs answers it "no" unseen, and
     the action silently did nothing. Confirmed, the form carries the marker that lets the
     server act at once; without it (no JavaScript, or no modal dialogs) the server answers a
     confirmation page instead (core/confirm.py). */
  var CONFIRM_FIELD = "confirmed";
  /* How long a download's button ignores another click (a double click sends one form). */
  var DOWNLOAD_LOCK_MS = 2000;
  var confirmDialog = document.querySelector("dialog[data-confirm-dialog]");
  /* The form the dialog just confirmed: its next submit goes through with the marker. */
  var confirmedForm = null;
  function addConfirmMarker(form) {
    if (form.querySelector("input[name=" + CONFIRM_FIELD + "]")) return;
    var marker = document.createElement("input");
    marker.type = "hidden";
    marker.name = CONFIRM_FIELD;
    marker.value = "yes";
    form.appendChild(marker);
  }
  /* Opens the dialog for `form`; false where it cannot (the server's page asks then). */
  function askBefore(form, submitter) {
    if (!confirmDialog || typeof confirmDialog.showModal !== "function" || confirmDialog.open) {
      return false;
    }
    var accept = confirmDialog.querySelector("[data-confirm-accept]");
    var cancel = confirmDialog.querySelector("[data-confirm-cancel]");
    confirmDialog.querySelector("[data-confirm-question]").textContent = form.getAttribute("data-confirm");
    var detail = confirmDialog.querySelector("[data-confirm-detail]");
    detail.textContent = form.getAttribute("data-confirm-detail") || "";
    detail.hidden = !detail.textContent;
    accept.textContent = form.getAttribute("data-confirm-action") || "Confirm";
    /* "Cancel" next to "Cancel invitation" is ambiguous: such a form names its safe answer. */
    cancel.textContent = form.getAttribute("data-confirm-keep") || "Cancel";
    confirmDialog.returnValue = "";
    confirmDialog.showModal();
    /* The safe answer has the focus: Enter or Space right away destroys nothing. */
    cancel.focus();
    confirmDialog.addEventListener("close", function answered() {
      confirmDialog.removeEventListener("close", answered);
      if (confirmDialog.returnValue !== "confirm") {
        /* Cancel or Escape: back to the button that asked, not to the top of the page. */
        if (submitter) submitter.focus();
        return;
      }
      addConfirmMarker(form);
      if (typeof form.requestSubmit === "function") {
        confirmedForm = form;
        form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      } else {
        form.submit();
      }
    });
    return true;
  }
  /* A login or logout in another tab gives the browser a new CSRF token (as Django's login
     does); a form this tab drew before carries the old one. Its token is the cookie's at
     the moment it is sent (Django accepts the cookie's secret as the form's token). */
  function currentCsrfToken(form) {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (field && match) field.value = decodeURIComponent(match[1]);
  }
  /* The new token is the browser's, whoever logged in: the form says which account its
     page was drawn for, and the server does nothing if another is logged in now
     (core.decorators: OPENED_AS_FIELD). */
  var ACCOUNT = document.body.getAttribute("data-account") || "";
  function openedAs(form) {
    if (!ACCOUNT || form.method.toLowerCase() !== "post") return;
    var field = form.querySelector("input[name=opened_as]");
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "opened_as";
      form.appendChild(field);
    }
    field.value = ACCOUNT;
  }
  /* Date-time fields read in UTC (<input type="datetime-local" data-utc-datetime>: a key's
     expiry). A date picked without its time leaves the input's value empty, and a form
     without the browser's checks (novalidate: the server's errors are shown instead) sent
     it as "no expiry": a key meant to expire never did (a dates audit). Such a form stops
     with the error beside the field. A complete value is also said in the viewer's own
     time zone, so that "UTC" is not a sum to do in UTC-8. */
  var UTC_FIELDS = "input[type=datetime-local][data-utc-datetime]";
  var INCOMPLETE = "Complete both the date and the time (UTC), or clear the field.";

  function describedBy(input, id, add) {
    var ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(function (x) {
      return x && x !== id;
    });
    if (add) ids.push(id);
    if (ids.length) input.setAttribute("aria-describedby", ids.join(" "));
    else input.removeAttribute("aria-describedby");
  }

  function showIncomplete(input, incomplete) {
    var id = input.id + "-incomplete";
    var error = document.getElementById(id);
    var field = input.closest(".field");
    if (incomplete && !error) {
      error = document.createElement("p");
      error.className = "field-error";
      error.id = id;
      error.textContent = INCOMPLETE;
      if (field) field.appendChild(error);  /* where the server puts a field's errors */
      else input.insertAdjacentElement("afterend", error);
    } else if (!incomplete && error) {
      error.remove();
    }
    describedBy(input, id, incomplete);
    if (incomplete) input.setAttribute("aria-invalid", "true");
    else if (!(field && field.querySelector(".field-error"))) input.removeAttribute("aria-invalid");
    if (field) field.classList.toggle("field-invalid", !!field.querySelector(".field-error"));
  }

  function stopIncomplete(form) {
    var first = null;
    form.querySelectorAll(UTC_FIELDS).forEach(function (input) {
      var incomplete = input.validity.badInput;
      showIncomplete(input, incomplete);
      if (incomplete && !first) first = input;
    });
    if (first) first.focus();
    return !!first;
  }

  var viewerZone = "";
  try { viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* old browser */ }

  function sayLocal(input) {
    var id = input.id + "-local";
    var echo = document.getElementById(id);
    if (!echo) {
      echo = document.createElement("p");
      echo.className = "field-help field-local";
      echo.id = id;
      var field = input.closest(".field");
      var help = field && field.querySelector(".field-help");
      (help || input).insertAdjacentElement("afterend", echo);
    }
    var moment = input.value ? new Date(input.value + "Z") : null;
    /* Nothing to say in UTC itself, or for an empty or unreadable value. */
    var shown = moment && !isNaN(moment.getTime()) && moment.getTimezoneOffset() !== 0;
    echo.hidden = !shown;
    echo.textContent = shown ? "Your time" + (viewerZone ? " (" + viewerZone + ")" : "") + ": " +
      moment.toLocaleString(undefined, {
        weekday: "short", day: "numeric", month: "short", year: "numeric",
        hour: "2-digit", minute: "2-digit", timeZoneName: "short"
      }) + "." : "";
    describedBy(input, id, shown);
    if (input.id && document.getElementById(input.id + "-incomplete") && !input.validity.badInput) {
      showIncomplete(input, false);
    }
  }

  document.querySelectorAll(UTC_FIELDS).forEach(function (input) {
    if (!input.id) return;
    sayLocal(input);
    input.addEventListener("input", function () { sayLocal(input); });
    input.addEventListener("change", function () { sayLocal(input); });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    /* A dialog's Cancel (formmethod="dialog") or its own buttons (method="dialog") only
       close it: nothing is sent. */
    if (form.method.toLowerCase() === "dialog") return;
    if (event.submitter && event.submitter.getAttribute("formmethod") === "dialog") return;
    if (stopIncomplete(form)) {
      event.preventDefault();
      return;
    }
    currentCsrfToken(form);
    openedAs(form);
    if (form.hasAttribute("data-confirm")) {
      if (form === confirmedForm) {
        confirmedForm = null;
      } else if (askBefore(form, event.submitter)) {
        event.preventDefault();
        return;
      }
    }
    /* One click, one request: a double click must not send the form twice. */
    if (form.method.toLowerCase() === "post") {
      if (form.getAttribute("data-submitted")) {
        event.preventDefault();
        return;
      }
      form.setAttribute("data-submitted", "true");
      /* A download (<form data-download>) leaves this page where it is: after a moment,
         its button may be clicked again for another copy. */
      if (form.hasAttribute("data-download")) {
        setTimeout(function () { form.removeAttribute("data-submitted"); }, DOWNLOAD_LOCK_MS);
      }
    }
  });

  /* Back/forward cache: a restored page may submit again. */
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      form.removeAttribute("data-submitted");
    });
    /* A confirmed form brought back asks again. */
    document.querySelectorAll("form[data-confirm] input[name=" + CONFIRM_FIELD + "]").forEach(
      function (marker) { marker.remove(); }
    );
  });

  /* Copy buttons: <button data-copy-target="element-id">. */
  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  /* A polite live region says what a Copy button did: a button's own new text is not
     announced. In an open dialog it is the dialog's own (templates/includes/live_region.html):
     a modal dialog leaves the rest of the page out of the accessibility tree, and a region in
     <body> was never said (an accessibility audit). Elsewhere, one made once in <body>.
     Emptied first, so the same words twice are said twice. */
  var pageLiveRegion = null;
  function liveRegionFor(element) {
    var dialog = element.closest("dialog");
    var own = dialog && dialog.open ? dialog.querySelector("[data-live-region]") : null;
    if (own) return own;
    if (!pageLiveRegion) {
      pageLiveRegion = document.createElement("div");
      pageLiveRegion.className = "visually-hidden";
      pageLiveRegion.setAttribute("role", "status");
      pageLiveRegion.setAttribute("aria-live", "polite");
      pageLiveRegion.setAttribute("data-live-region", "");
      document.body.appendChild(pageLiveRegion);
    }
    return pageLiveRegion;
  }
  function announce(text, from) {
    var region = liveRegionFor(from);
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 100);
  }

  function flash(button, label) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    announce(label, button);
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (!button) return;
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) return;
    var text = target.textContent.trim();
    var fallback = function () {
      selectText(target);
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      /* Copied: the secret does not stay selected (on Linux a selection is also the PRIMARY
         one, pasted by a middle click). Left selected only for Ctrl+C. */
      if (copied && window.getSelection) window.getSelection().removeAllRanges();
      flash(button, copied ? (button.getAttribute("data-copied-label") || "Copied") : "Press Ctrl+C");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        flash(button, button.getAttribute("data-copied-label") || "Copied");
      }, fallback);
    } else {
      fallback();
    }
  });

  /* The dialog showing a new key: modal when supported; a reload must not POST again,
     and once closed the key leaves the page. */
  var secretDialog = document.querySelector("[data-secret-dialog]");
  if (secretDialog) {
    var cleanUrl = secretDialog.getAttribute("data-clean-url");
    if (cleanUrl && window.history && window.history.replaceState) {
      window.history.replaceState(null, "", cleanUrl);
    }
    if (typeof secretDialog.showModal === "function") {
      secretDialog.close();
      secretDialog.showModal();
    }
    /* Focus starts on Copy (what to do first), inside the dialog, whatever took it on load. */
    var focusInDialog = function () {
      if (!secretDialog.isConnected || secretDialog.contains(document.activeElement)) return;
      var start = secretDialog.querySelector("[data-copy-target]") ||
        secretDialog.querySelector("button, [href], input, textarea, select");
      if (start) start.focus();
    };
    focusInDialog();
    window.addEventListener("load", focusInDialog);
    var secretValue = secretDialog.querySelector("[data-secret]");
    if (secretValue) {
      secretValue.addEventListener("dblclick", function () { selectText(secretValue); });
    }
    /* Leaving the page drops the key, so the back/forward cache never brings it back. */
    window.addEventListener("pagehide", function () {
      if (secretValue) secretValue.textContent = "";
      secretDialog.remove();
    });
    /* Escape must not lose the secret by accident: it closes the dialog only after Copy, or
       once the user confirms, in the dialog itself (templates/includes/secret_close_confirm.html;
       not window.confirm(), which a browser told to stop the page's dialogs answers "no"
       unseen). Its keydown is handled here, since Chromium lets a page refuse a dialog's
       "cancel" only after a click, and a dialog that closes all the same reopens. */
    var mayClose = false;
    var question = secretDialog.querySelector("[data-secret-close-confirm]");
    var footer = secretDialog.querySelector("form[method=dialog]");
    var copyButton = secretDialog.querySelector("[data-copy-target]");
    var asking = function () { return !!question && !question.hidden; };
    /* The question takes the footer's place (its "I have copied it" would be a third answer);
       the safe answer has the focus, and a screen reader reads the question (role=alertdialog). */
    var askBeforeClosing = function () {
      if (!question) return;
      question.hidden = false;
      if (footer) footer.hidden = true;
      question.querySelector("[data-secret-close-keep]").focus();
    };
    /* "Keep it open", Escape again, or Copy: back to the secret, the focus on Copy. */
    var backToSecret = function () {
      if (!asking()) return;
      question.hidden = true;
      if (footer) footer.hidden = false;
      if (copyButton) copyButton.focus();
    };
    var closeOrAsk = function () {
      if (mayClose) secretDialog.close();
      else if (asking()) backToSecret();
      else askBeforeClosing();
    };
    secretDialog.addEventListener("click", function (event) {
      if (!event.target.closest) return;
      if (event.target.closest("[data-copy-target]")) {
        mayClose = true;
        backToSecret();
      } else if (event.target.closest("[data-secret-close-keep]")) {
        backToSecret();
      } else if (event.target.closest("[data-secret-close-accept]")) {
        mayClose = true;
        secretDialog.close();
      }
    });
    secretDialog.addEventListener("submit", function () { mayClose = true; });
    secretDialog.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      event.preventDefault();
      closeOrAsk();
    });
    secretDialog.addEventListener("cancel", function (event) {
      event.preventDefault();
      closeOrAsk();
    });
    secretDialog.addEventListener("close", function () {
      /* close() above (to reopen as modal) fires a late "close" event: ignore it. */
      if (secretDialog.open) return;
      if (!mayClose && typeof secretDialog.showModal === "function") {
        secretDialog.showModal();
        askBeforeClosing();
        return;
      }
      if (secretValue) secretValue.textContent = "";
      secretDialog.remove();
      /* Focus goes back to the page (the list the new key is on), not to <body>. */
      var next = document.getElementById(secretDialog.getAttribute("data-return-focus") || "main");
      if (next) {
        if (!next.hasAttribute("tabindex")) next.setAttribute("tabindex", "-1");
        next.focus();
      }
    });
  }

  /* A page reached by a redirect after an action (revoke, invite, remove) says what
     happened in a flash at its top: focus moves there, so a screen reader reads it (a live
     region already present on load often is not) and Tab goes on from the top of the page.
     Not over a dialog or a field that took the focus (autofocus) first. */
  /* So does a failed key row action's message on its row (the key revoked or rolled
     meanwhile), far down a long list. */
  var message = document.querySelector(".flash-stack") ||
    document.querySelector("[data-list-url] .key-row .field-error[role=alert]");
  var active = document.activeElement;
  if (message && !document.querySelector("dialog[open], [autofocus]") &&
      (!active || active === document.body || active === document.documentElement)) {
    message.setAttribute("tabindex", "-1");
    message.focus();
  }

  /* A key list re-drawn by a failed row action (the error on the key's row) is served at
     the action's address: show the list's own (data-list-url), so that its relative links
     (pagination) lead somewhere and a reload shows the list instead of posting again. */
  var listed = document.querySelector("[data-list-url]");
  if (listed && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", listed.getAttribute("data-list-url"));
  }

  /* Form dialogs (a key row's Roll, Origins and Edit limits): <button data-dialog-open="dialog-id">
     opens a native <dialog> as a modal, in the top layer, so no scroll box clips it; one rendered
     with server-side errors (data-dialog-autoopen) opens at once, so the errors show next to
     their fields. Cancel is formmethod="dialog". */
  /* An org key's "Edit limits" lists the organization's projects: the page holds that list
     once, in the create form (<ul id="project-choices">), and each dialog copies its items
     when it first opens, checking the key's (data-checked, not what the create form has
     checked) and naming each box after the dialog's field. A second copy of the list made
     the page of an organization of 1,200 projects 200 KB heavier. */
  function fillProjectChoices(dialog) {
    var source = document.getElementById("project-choices");
    if (!source) return;
    dialog.querySelectorAll("ul[data-project-choices]:empty").forEach(function (list) {
      var prefix = list.getAttribute("data-project-choices");
      var checked = (list.getAttribute("data-checked") || "").split(" ");
      Array.prototype.forEach.call(source.children, function (item) {
        list.appendChild(item.cloneNode(true));
      });
      list.querySelectorAll("input[type=checkbox]").forEach(function (box, i) {
        box.id = prefix + "_" + i;
        box.defaultChecked = box.checked = checked.indexOf(box.value) !== -1;
        box.nextElementSibling.htmlFor = box.id;
      });
    });
  }
  function openModal(dialog) {
    fillProjectChoices(dialog);
    if (typeof dialog.showModal !== "function") {
      dialog.setAttribute("open", "");
      return;
    }
    if (dialog.open) dialog.close();
    dialog.showModal();
    /* The first invalid field takes the focus (a group's first box: a fieldset takes none). */
    var invalid = dialog.querySelector("[aria-invalid=true]");
    if (invalid && invalid.tagName === "FIELDSET") {
      invalid = invalid.querySelector("input:not([type=hidden]), textarea, select") || invalid;
    }
    /* A choice starts on the option already chosen (Roll's grace), as a radio group's Tab does. */
    var first = invalid ||
      dialog.querySelector("input[type=radio]:checked, input:not([type=hidden]):not([type=radio]), textarea, select");
    /* An error about the whole form (an expired form) describes the dialog, so it is read out
       as the dialog opens. */
    var formAlert = dialog.querySelector(".form-alert");
    if (formAlert) {
      if (!formAlert.id) formAlert.id = dialog.id + "-alert";
      dialog.setAttribute("aria-describedby", formAlert.id);
    }
    if (first) first.focus();
  }
  document.addEventListener("click", function (event) {
    var opener = event.target.closest ? event.target.closest("[data-dialog-open]") : null;
    if (!opener) return;
    var dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
    if (dialog && dialog.tagName === "DIALOG") openModal(dialog);
  });
  document.querySelectorAll("dialog[data-dialog-autoopen]").forEach(function (dialog) {
    openModal(dialog);
    /* Opened by the page, not by its button: closed (Cancel, Escape), the focus goes to the
       button that opens it, where it would have gone back to, not to the top of the page. */
    dialog.addEventListener("close", function restore() {
      if (dialog.open) return;  /* the close of openModal's reopening, dispatched late */
      dialog.removeEventListener("close", restore);
      var opener = document.querySelector('[data-dialog-open="' + dialog.id + '"]');
      if (opener) opener.focus();
    });
  });

  /* Popovers and switchers built on <details data-dismissable>: one open at a time,
     closed by Escape or a click elsewhere. */
  var popovers = Array.prototype.slice.call(document.querySelectorAll("details[data-dismissable]"));
  popovers.forEach(function (details) {
    details.addEventListener("toggle", function () {
      if (!details.open) return;
      popovers.forEach(function (other) { if (other !== details) other.open = false; });
      var first = details.querySelector("input, select, textarea, a, button:not([type=hidden])");
      if (first && details.classList.contains("popover")) first.focus();
    });
  });
  document.addEventListener("click", function (event) {
    popovers.forEach(function (details) {
      if (details.open && !details.contains(event.target)) details.open = false;
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    popovers.forEach(function (details) {
      if (details.open) {
        details.open = false;
        var summary = details.querySelector("summary");
        if (summary) summary.focus();
        event.preventDefault();  /* this Escape is spent: the menu around it stays open */
      }
    });
  });

  /* Narrow screens: the sidebar navigation collapses behind a Menu button. */
  var toggle = document.querySelector("[data-nav-toggle]");
  var nav = document.querySelector("[data-nav]");
  if (toggle && nav) {
    var narrow = window.matchMedia("(max-width: 900px)");
    var apply = function () {
      if (narrow.matches) {
        toggle.hidden = false;
        var open = toggle.getAttribute("aria-expanded") === "true" && nav.classList.contains("is-open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        nav.classList.toggle("is-collapsed", !open);
      } else {
        toggle.hidden = true;
        nav.classList.remove("is-collapsed");
      }
    };
    var setOpen = function (open) {
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      nav.classList.toggle("is-open", open);
      nav.classList.toggle("is-collapsed", !open);
    };
    toggle.addEventListener("click", function () {
      setOpen(toggle.getAttribute("aria-expanded") !== "true");
    });
    /* Escape closes the open menu and returns to its button (a switcher open in it closes first). */
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      if (toggle.hidden || toggle.getAttribute("aria-expanded") !== "true") return;
      if (document.querySelector("dialog[open]")) return;
      setOpen(false);
      toggle.focus();
    });
    if (narrow.addEventListener) narrow.addEventListener("change", apply);
    apply();
  }
})();
