// Clear the paste box once the server says it took everything in it (HX-Trigger: hashdrop-taken);
// when a line was refused, the paste stays so that nothing is lost.
document.addEventListener("hashdrop-taken", () => {
  const form = document.querySelector("form.submit");
  if (form) {
    form.reset();
  }
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
