// Clear the paste box once the server says it took everything in it (HX-Trigger: hashdrop-taken);
// when a line was refused, the paste stays so that nothing is lost.
document.addEventListener("hashdrop-taken", () => {
  const form = document.querySelector("form.submit");
  if (form) {
    form.reset();
  }
});
