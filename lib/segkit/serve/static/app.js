// The segkit page: pick or drop a photo, send it twice to POST /v1/segment (overlay and cut-out),
// show the three pictures side by side with a download link each. No framework, no build step.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("controls"), fileInput = $("file"), drop = $("drop"), go = $("go");
  const status = $("status"), errorBox = $("error");
  let photo = null;           // the chosen File
  const urls = {};            // object URLs to revoke when replaced
  let models = [];

  function say(text, busy) {
    status.textContent = text;
    status.classList.toggle("busy", !!busy);
  }
  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    say("Something went wrong: see the message below.");
  }
  function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }

  function show(kind, blob, name) {
    if (urls[kind]) URL.revokeObjectURL(urls[kind]);
    const url = urls[kind] = URL.createObjectURL(blob);
    const img = $(kind), link = $(kind + "-download");
    img.src = url; img.hidden = false;
    link.href = url; link.download = name; link.hidden = false;
  }
  function hideResults() {
    for (const kind of ["overlay", "cutout"]) { $(kind).hidden = true; $(kind + "-download").hidden = true; }
  }

  function authHeaders() {
    const t = sessionStorage.getItem("segkit-token");
    return t ? { Authorization: "Bearer " + t } : {};
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (body && body.error) return body.error;
    } catch (e) { /* not JSON */ }
    return resp.status + " " + resp.statusText;
  }

  async function loadModels() {
    try {
      const resp = await fetch("/v1/models", { headers: authHeaders() });
      if (resp.status === 401) { $("token-row").hidden = false; fail("This server needs a token: type it in the Token field."); return; }
      if (!resp.ok) { fail("Could not list the models: " + await errorText(resp)); return; }
      const data = await resp.json();
      models = data.models.filter((m) => m.installed);
      const select = $("model");
      select.innerHTML = "";
      for (const m of models) {
        const opt = document.createElement("option");
        opt.value = m.name;
        opt.textContent = m.name + (m.license ? " (" + m.license + ")" : "");
        if (m.name === data.default) opt.selected = true;
        select.appendChild(opt);
      }
      fillClasses();
    } catch (e) {
      fail("Could not reach the server: " + e.message);
    }
  }
  function fillClasses() {
    const m = models.find((x) => x.name === $("model").value);
    const list = $("class-names");
    list.innerHTML = "";
    if (m && m.classes) for (const name of Object.values(m.classes)) {
      const opt = document.createElement("option"); opt.value = name; list.appendChild(opt);
    }
    // each model starts at the threshold the CLI takes for its kind (0.25 instance scores, 0.5 probabilities)
    if (m && m.default_threshold != null) {
      $("threshold").value = m.default_threshold;
      $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    }
  }

  function choose(file) {
    clearError();
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) { fail(file.name + " is not an image (" + file.type + ")."); return; }
    photo = file;
    show("original", file, file.name);
    hideResults();
    go.disabled = false;
    say("Ready: " + file.name + ". Press Segment.");
    run();
  }

  function request(format) {
    const params = new URLSearchParams({ format: format, model: $("model").value, threshold: $("threshold").value });
    const classes = $("classes").value.trim();
    if (classes) params.set("classes", classes);
    if (format === "cutout") params.set("background", $("background").value);
    const body = new FormData();
    body.append("file", photo, photo.name);
    return fetch("/v1/segment?" + params.toString(), { method: "POST", body: body, headers: authHeaders() });
  }

  async function run() {
    if (!photo) { fail("Choose a photo first."); return; }
    clearError();
    go.disabled = true;
    say("Segmenting " + photo.name + "…", true);
    const t0 = performance.now();
    try {
      const [overlay, cutout] = await Promise.all([request("overlay"), request("cutout")]);
      for (const r of [overlay, cutout]) {
        if (r.status === 401) { $("token-row").hidden = false; fail("This server needs a token: type it in the Token field, then press Segment."); return; }
        if (!r.ok) { fail(photo.name + ": " + await errorText(r)); return; }
      }
      const stem = photo.name.replace(/\.[^.]*$/, "");
      const [ob, cb] = [await overlay.blob(), await cutout.blob()];
      show("overlay", ob, stem + "_overlay." + (ob.type === "image/jpeg" ? "jpg" : "png"));
      show("cutout", cb, stem + "_cutout." + (cb.type === "image/jpeg" ? "jpg" : "png"));
      say("Done: " + photo.name + " in " + Math.round(performance.now() - t0) + " ms.");
    } catch (e) {
      fail("The request failed: " + e.message + " (is the server still running?)");
    } finally {
      go.disabled = !photo;
    }
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  $("model").addEventListener("change", () => { fillClasses(); if (photo) run(); });
  $("background").addEventListener("change", () => { if (photo) run(); });
  $("threshold").addEventListener("input", () => { $("threshold-value").textContent = Number($("threshold").value).toFixed(2); });
  $("token").addEventListener("change", () => { sessionStorage.setItem("segkit-token", $("token").value); loadModels(); });
  loadModels();
})();
