// Clear the paste box once the server has taken a submit sent by htmx.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (event.detail.successful && form.matches && form.matches("form.submit")) {
    form.reset();
  }
});
