// Ferryman's web UI: the little the pages need from a script. Everything works without it
// except the live log and local times (shown in UTC then).
"use strict";

const MAX_LOG_LINES = 5000;

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    el.title = el.textContent;
    el.textContent = when.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }
}

function autoSubmit(root) {
  for (const select of root.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

function oneOfChoices(root) {
  for (const box of root.querySelectorAll("[data-oneof]")) {
    const select = box.querySelector("[data-oneof-select]");
    const options = Array.from(box.children).filter((el) => el.hasAttribute("data-option"));
    const show = () => {
      for (const option of options) {
        const picked = option.getAttribute("data-option") === select.value;
        option.hidden = !picked;
        // Inputs of the options not picked are not sent (the server reads the picked one only).
        for (const input of option.querySelectorAll("input, select, textarea")) {
          if (input.closest("[data-option]") === option) input.disabled = !picked;
        }
      }
    };
    select.addEventListener("change", show);
    show();
  }
}

function followLog() {
  const log = document.getElementById("log");
  if (!log || !log.dataset.follow || !window.EventSource) return;
  const source = new EventSource(log.dataset.follow);
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.scrollTop = log.scrollHeight;
  source.addEventListener("line", (event) => {
    const stick = atBottom();
    const line = document.createElement("span");
    line.textContent = event.data;
    log.append(line, "\n");
    while (log.childElementCount > MAX_LOG_LINES) {
      log.firstElementChild.nextSibling.remove();
      log.firstElementChild.remove();
    }
    if (stick) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("end", () => {
    source.close();
    // The attempt (or job) has ended: show its status, figures and failures.
    window.setTimeout(() => window.location.reload(), 300);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) log.dataset.broken = "1";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  autoSubmit(document);
  oneOfChoices(document);
  followLog();
});
