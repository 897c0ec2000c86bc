// Enhancements only: every page works the same without this file.
(function () {
  "use strict";

  // Nothing here submits a form: only a person's click confirms an address (link
  // scanners that run scripts, or someone opening a mail an attacker's upload caused,
  // must never publish a key).

  // "Copy" buttons beside commands, where the browser allows writing to the clipboard.
  if (!navigator.clipboard || !window.isSecureContext) {
    return;
  }
  var status = document.createElement("p");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  document.body.appendChild(status);
  Array.prototype.forEach.call(document.querySelectorAll("pre > code"), function (code) {
    var pre = code.parentNode;
    var wrap = document.createElement("div");
    wrap.className = "cmd";
    pre.parentNode.insertBefore(wrap, pre);
    wrap.appendChild(pre);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy secondary";
    button.textContent = "Copy";
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(code.textContent).then(
        function () {
          button.textContent = "Copied";
          status.textContent = "Command copied";
          setTimeout(function () { button.textContent = "Copy"; }, 2000);
        },
        function () { status.textContent = "Copying failed; select the command instead"; }
      );
    });
    wrap.appendChild(button);
  });
})();
