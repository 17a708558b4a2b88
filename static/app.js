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
