// Enhancements only: every page works the same without this file.
(function () {
  "use strict";

  // A verification page confirms by itself when a person opens the link in a browser.
  // Programs that scan links in mail only fetch the URL and never run this, so they cannot
  // publish anything; without JavaScript the button does the same.
  var confirm = document.querySelector("form[data-autosubmit]");
  if (confirm) {
    confirm.submit();
    return;
  }

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
