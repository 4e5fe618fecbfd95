// The login page: a token in the URL fragment (what `tiltloop dashboard` prints; a fragment is
// never sent to a server) fills the form and submits it; the fragment is removed at once.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  const next = params.get("next");
  if (next && next.startsWith("/") && !next.startsWith("//")) {
    document.getElementById("next").value = next;
  }
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    history.replaceState(null, "", location.pathname + location.search);
    document.getElementById("token").value = decodeURIComponent(match[1]);
    document.getElementById("login-form").submit();
  }
})();
