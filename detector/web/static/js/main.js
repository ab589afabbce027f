// The web app's entry: the header, the hash router and the session.
//
// Routes: #/ (the job list and the upload form), #/jobs/<id> (one job; ?t=12.3
// opens its video at 12.3 s), #/search (moments across the jobs), #/signin and
// #/register. Without a session every route shows the sign-in form;
// after signing in, the page asked for is shown.

import * as api from "./api.js";
import { authView } from "./auth.js";
import { h, replace } from "./dom.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { searchView } from "./search.js";

const main = document.getElementById("main");
const account = document.getElementById("account");
const sections = document.getElementById("sections");
let view = null;

function renderAccount() {
  if (!api.signedIn()) {
    replace(account);
    replace(sections);
    return;
  }
  replace(sections, h("a", { class: "nav-link", href: "#/" }, "Jobs"), h("a", { class: "nav-link", href: "#/search" }, "Search"));
  const user = api.currentUser();
  const signOut = h("button", { type: "button", class: "small", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", () => {
    signOut.disabled = true;
    // The address changes without a hashchange: signing out shows the form once (onSessionChange).
    history.replaceState(null, "", "#/signin");
    api.signOut();
  });
  replace(account, h("span", { class: "user" }, user ? user.username : ""), signOut);
}

function route() {
  let hash = location.hash || "#/";
  if (!hash.startsWith("#/")) {
    if (view) return; // an in-page anchor such as #main: the page stays
    hash = "#/";
  }
  if (view) view.destroy();
  view = null;
  replace(main);
  renderAccount();
  if (!api.signedIn()) {
    view = authView(main, hash);
    return;
  }
  const [path, query] = hash.slice(1).split("?");
  const job = /^\/jobs\/([^/]+)$/.exec(path);
  if (job) view = jobView(main, decodeURIComponent(job[1]), new URLSearchParams(query || ""));
  else if (path === "/search") view = searchView(main, new URLSearchParams(query || ""));
  else if (path === "/" || path === "/signin" || path === "/register" || path === "") view = jobsView(main);
  else {
    main.append(h("section", { class: "card" }, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to your jobs"))));
  }
  main.focus({ preventScroll: true });
}

api.onSessionChange(() => route());
window.addEventListener("hashchange", route);

(async () => {
  await api.restoreSession();
  route();
  document.body.dataset.ready = "1";
})();
