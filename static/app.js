// Clear the paste box once the server says it took everything in it (HX-Trigger: hashdrop-taken);
// when a line was refused, the paste stays so that nothing is lost.
document.addEventListener("hashdrop-taken", () => {
  const form = document.querySelector("form.submit");
  if (form) {
    form.reset();
  }
});

// A button that asks first (data-confirm), as "Remove + delete files" does: nothing is sent
// unless the person says yes.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});

// The table's buttons (form="row-actions", each with its formaction) post in place: the answer is
// the table and the button's message. Done here, on the click, rather than by htmx as the page
// starts: htmx prepares every submit button it finds, and 150 of them took a third of its start
// before the first paint. Without JavaScript the buttons post their form as any button does.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[form=row-actions]");
  if (!button || event.defaultPrevented || !window.htmx) {
    return;
  }
  event.preventDefault();
  const values = button.name ? { [button.name]: button.value } : {};
  htmx.ajax("POST", button.formAction, { source: button.form, target: "#jobs", swap: "outerHTML", values });
});

// The Files page's "Choose all / none": tick or clear every file's box (saved with Save choice).
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-choose]");
  if (!button) {
    return;
  }
  const wanted = button.dataset.choose === "all";
  for (const box of document.querySelectorAll("#files input[name=wanted]")) {
    box.checked = wanted;
  }
});

// Let the browser hand magnet links to this page (/?paste=<link> fills the form; nothing starts
// until the person clicks Start). Browsers allow it on https:// and on localhost only.
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("handle-magnets");
  if (!button || !navigator.registerProtocolHandler || !window.isSecureContext) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", () => {
    try {
      navigator.registerProtocolHandler("magnet", `${location.origin}/?paste=%s`);
      button.textContent = "Magnet links open here once your browser's prompt is accepted";
    } catch (error) {
      button.textContent = `This browser refused: ${error.message}`;
    }
  });
});

// A magnet's "waiting 1m 05s" counts on in the browser: the table's poll re-sends a row only
// when the job changes, not because a second went by. Each clock starts from the seconds the
// server rendered (data-waited) and adds the time since this script first saw it.
function duration(seconds) {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const secs = seconds % 60;
  const two = (number) => String(number).padStart(2, "0");
  if (hours) {
    return `${hours}h ${two(minutes)}m`;
  }
  return minutes ? `${minutes}m ${two(secs)}s` : `${secs}s`;
}

setInterval(() => {
  const now = Date.now();
  for (const clock of document.querySelectorAll("[data-waited]")) {
    clock.dataset.seenAt ??= String(now);
    const waited = Number(clock.dataset.waited) + Math.floor((now - Number(clock.dataset.seenAt)) / 1000);
    clock.textContent = duration(waited);
  }
}, 1000);
