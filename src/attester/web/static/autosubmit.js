// Confirms a verification link opened in a browser. Link scanners that only fetch the URL
// never run it, so they cannot publish anything; without JavaScript the button works.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("confirm-form");
  if (form) { form.submit(); }
});
