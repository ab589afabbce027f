// Sign in and register.

import * as api from "./api.js";
import { h } from "./dom.js";

let formCount = 0;

function field(label, input) {
  formCount += 1;
  input.id = `${input.name}-${formCount}`;
  return h("div", { class: "field" }, h("label", { htmlFor: input.id }, label), input);
}

/** The sign-in form, or the register form at #/register. */
export function authView(root, hash) {
  const registering = hash === "#/register";
  const username = h("input", {
    name: "username", autocomplete: "username", required: true, minlength: 3, maxlength: 64,
    pattern: "[A-Za-z0-9_.\\-]{3,64}", spellcheck: "false", autocapitalize: "none",
  });
  const password = h("input", {
    name: "password", type: "password", required: true, minlength: 8, maxlength: 1024,
    autocomplete: registering ? "new-password" : "current-password",
  });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, registering ? "Create account" : "Sign in");
  const form = h(
    "form",
    { class: "card auth", novalidate: false },
    h("h1", {}, registering ? "Create an account" : "Sign in"),
    field("Username", username),
    registering ? h("p", { class: "hint" }, "3 to 64 letters, digits, '.', '_' or '-'.") : null,
    field("Password", password),
    registering ? h("p", { class: "hint" }, "At least 8 characters.") : null,
    error,
    h("div", { class: "actions" }, submit),
    h(
      "p",
      { class: "switch" },
      registering ? "Have an account? " : "New here? ",
      h("a", { href: registering ? "#/signin" : "#/register" }, registering ? "Sign in" : "Create an account"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      if (registering) await api.register(username.value, password.value);
      else await api.signIn(username.value, password.value);
      // Signed in: the router (main.js) shows the page asked for, or the job list.
      if (location.hash === "#/register" || location.hash === "#/signin") location.hash = "#/";
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      submit.disabled = false;
      password.focus();
    }
  });
  root.append(form);
  username.focus();
  document.title = registering ? "Create an account · detector" : "Sign in · detector";
  return { destroy() {} };
}
