// vaedx viewer: upload one image to /v1/predict and show score, heatmap overlay, contour and reconstruction;
// or upload a volume to /v1/volumes and scroll through its slices' overlays.
// No external requests: everything comes from this server (the Content-Security-Policy enforces it).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const input = $("file-input");
  const zone = $("drop-zone");
  const status = $("status");

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function png(b64) {
    return "data:image/png;base64," + b64;
  }

  function fmt(x) {
    return x === null || x === undefined ? "–" : Number(x).toPrecision(4);
  }

  let model = null; // GET /v1/model, for plain-language explanations of the threshold

  function percent(p) {
    const v = 100 * p;
    return v >= 99.95 ? "> 99.9%" : v < 0.05 ? "< 0.1%" : v.toFixed(1) + "%";
  }

  function describeModel(m) {
    const shape = m.image_shape.slice(1).join("×");
    const n = m.training_data && m.training_data.n_train;
    const labels = m.training_data && m.training_data.train_labels;
    const what = labels ? Object.keys(labels).join(", ") : "unlabelled";
    return "Model: " + m.kind.toUpperCase() + " on " + shape + " images" +
      (n ? ", trained on " + n + " " + what + " images" : "") + "; anomaly scorer " + m.scorer + "." +
      (m.calibration.problem ? " " + m.calibration.problem + "." : "");
  }

  function flagHelp(r) {
    if (r.flag === null) return "This model has no calibrated threshold, so the score cannot be called high or low.";
    const d = (model && model.calibration.details) || {};
    const spec = d.target_specificity ? Math.round(100 * d.target_specificity) + "% of " : "most ";
    const ref = d.n_calibration ? " (" + d.n_calibration + " " + (d.normal_label || "normal") +
      " images of the " + (d.split || "validation") + " split)" : "";
    return "The threshold was set so that " + spec + "normal reference images" + ref + " score at or below it. " +
      (r.flag ? "This image scores higher: it looks unlike them." : "This image does not.");
  }

  function applyOpacity() {
    const v = Number($("opacity").value);
    $("heatmap-img").style.opacity = String(v / 100);
    $("opacity-value").textContent = v + "%";
  }

  function showResult(r) {
    $("scorer").textContent = r.scorer;
    $("score").textContent = fmt(r.score);
    $("threshold").textContent = r.threshold === null ? "not calibrated" : fmt(r.threshold);
    const flag = $("flag");
    flag.textContent = r.flag === null ? "no calibrated threshold" : r.flag ? "above threshold (unusual)" : "below threshold";
    flag.classList.toggle("abnormal", r.flag === true);
    $("flag-help").textContent = flagHelp(r);
    $("diagnosis").textContent = r.diagnosis
      ? r.diagnosis["class"] + " (probability " + percent(r.diagnosis.probability) + ")"
      : "not available (no diagnosis model attached)";
    $("diagnosis-help").textContent = r.diagnosis
      ? "Calibrated probability from a classifier on the model's latent features; it can be confidently wrong."
      : "";
    $("input-img").src = png(r.input_png);
    $("heatmap-img").src = png(r.heatmap_png);
    $("contour-img").src = png(r.contour.png);
    $("recon-img").src = png(r.reconstruction_png);
    const [h, w] = r.image.model_size;
    $("stack").style.aspectRatio = w + " / " + h;
    const c = r.contour;
    const calibrated = c.source.startsWith("calibrated");
    $("contour-info").textContent =
      (calibrated ? "Cyan outline: pixels above the calibrated pixel threshold (" + fmt(c.level) + ")"
        : "Cyan outline: the most anomalous 1% of this image's pixels (no calibrated pixel threshold)") +
      ", " + c.n_pixels + " pixels in " + c.regions.length + " region(s). Image " +
      r.image.format.toUpperCase() + " " + r.image.original_size.join("×") + ", shown as the model saw it (" +
      h + "×" + w + ").";
    $("legend-min").textContent = fmt(r.heatmap_scale.min);
    $("legend-max").textContent = fmt(r.heatmap_scale.max);
    $("legend-text").textContent = "Heatmap colour scale from " + fmt(r.heatmap_scale.min) +
      " (transparent, normal) to " + fmt(r.heatmap_scale.max) + " (yellow, most anomalous).";
    applyOpacity();
    $("results").hidden = false;
  }

  async function upload(file) {
    const body = new FormData();
    body.append("file", file);
    const slice = $("slice-index").value.trim();
    const win = $("window").value.trim();
    if (slice !== "") body.append("slice_index", slice);
    if (win !== "") body.append("window", win);
    setStatus("Analysing…", false);
    zone.setAttribute("aria-busy", "true");
    try {
      const resp = await fetch("/v1/predict", { method: "POST", body });
      const data = await resp.json().catch(() => ({ detail: "the server sent no JSON" }));
      if (!resp.ok) {
        setStatus("Could not analyse this file (" + resp.status + "): " + (data.detail || "unknown error"), true);
        return;
      }
      showResult(data);
      const flagWord = data.flag === null ? "" : data.flag ? ", above the threshold" : ", below the threshold";
      const diag = data.diagnosis ? "; diagnosis " + data.diagnosis["class"] : "";
      setStatus("Done. Score " + fmt(data.score) + flagWord + diag + ".", false);
    } catch (err) {
      setStatus("The server could not be reached: " + err, true);
    } finally {
      zone.removeAttribute("aria-busy");
    }
  }

  zone.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) upload(input.files[0]);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach((t) =>
    zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("dragover"); }));
  ["dragleave", "drop"].forEach((t) =>
    zone.addEventListener(t, () => zone.classList.remove("dragover")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) upload(f);
  });
  // A service bound to the network needs its API token: ask once, keep it in a same-site cookie so that
  // every request of this page (fetches and <img> loads alike) carries it.
  function askForToken() {
    const token = window.prompt("This vaedx service needs its API token:");
    if (token) {
      document.cookie = "vaedx_token=" + encodeURIComponent(token) + "; Path=/; SameSite=Strict";
      window.location.reload();
    } else {
      setStatus("This service needs its API token; reload the page to enter it.", true);
    }
  }
  fetch("/v1/model").then((resp) => {
    if (resp.status === 401) { askForToken(); return null; }
    return resp.ok ? resp.json() : null;
  }).then((m) => {
    if (m) { model = m; $("model-info").textContent = describeModel(m); }
  }).catch(() => {});
  $("opacity").addEventListener("input", applyOpacity);

  // -- volumes: POST /v1/volumes once, then one overlay PNG per slice from the server's cache --------------
  const vInput = $("volume-input");
  const vZone = $("volume-zone");
  const vStatus = $("volume-status");
  const slider = $("slice-slider");
  let volume = null;

  function setVolumeStatus(text, isError) {
    vStatus.textContent = text;
    vStatus.classList.toggle("error", Boolean(isError));
  }

  function showSlice(k) {
    if (!volume) return;
    const n = volume.n_slices;
    k = Math.max(0, Math.min(n - 1, k));
    slider.value = String(k);
    const s = volume.slices[k];
    $("volume-img").src = volume.overlay_url.replace("{index}", String(k));
    $("slice-value").textContent = (k + 1) + " of " + n;
    $("slice-score").textContent = fmt(s.score);
    const flag = $("slice-flag");
    flag.textContent = s.flag === null ? "no calibrated threshold" : s.flag ? "above threshold (unusual)" : "below threshold";
    flag.classList.toggle("abnormal", s.flag === true);
  }

  function showVolume(v) {
    volume = v;
    $("volume-scorer").textContent = v.scorer;
    $("volume-threshold").textContent = v.threshold === null ? "not calibrated" : fmt(v.threshold);
    const flagged = v.slices.filter((s) => s.flag).map((s) => s.index + 1);
    $("volume-flagged").textContent = v.threshold === null ? "–" :
      flagged.length + " of " + v.n_slices + (flagged.length ? " (" + flagged.slice(0, 20).join(", ") +
        (flagged.length > 20 ? ", …" : "") + ")" : "");
    $("volume-lesion").textContent = v.lesion_volume_mm3 === null ? "no calibrated pixel threshold" :
      Number(v.lesion_volume_mm3).toFixed(0) + " mm³ in " + v.n_components + " connected region(s)";
    $("volume-spacing").textContent = v.spacing_mm.map((x) => Number(x).toPrecision(3)).join(" × ") + " mm" +
      (v.spacing_assumed ? " (assumed: the file gives none, so mm figures are not physical)" : "");
    $("volume-order").textContent = "Slices: " + v.slice_order + ". Outline: " + v.contour_source + ".";
    $("map-link").href = v.map_url;
    $("mask-part").hidden = !v.mask_url;
    if (v.mask_url) $("mask-link").href = v.mask_url;
    slider.max = String(v.n_slices - 1);
    $("volume-results").hidden = false;
    showSlice(Math.floor(v.n_slices / 2));
    slider.focus();
  }

  async function uploadVolume(file) {
    const body = new FormData();
    body.append("file", file);
    setVolumeStatus("Scoring every slice…", false);
    vZone.setAttribute("aria-busy", "true");
    try {
      const resp = await fetch("/v1/volumes", { method: "POST", body });
      const data = await resp.json().catch(() => ({ detail: "the server sent no JSON" }));
      if (!resp.ok) {
        setVolumeStatus("Could not analyse this volume (" + resp.status + "): " + (data.detail || "unknown error"), true);
        return;
      }
      showVolume(data);
      setVolumeStatus("Done. " + data.n_slices + " slices scored.", false);
    } catch (err) {
      setVolumeStatus("The server could not be reached: " + err, true);
    } finally {
      vZone.removeAttribute("aria-busy");
    }
  }

  vZone.addEventListener("click", () => vInput.click());
  vInput.addEventListener("change", () => {
    if (vInput.files && vInput.files[0]) uploadVolume(vInput.files[0]);
    vInput.value = "";
  });
  ["dragenter", "dragover"].forEach((t) =>
    vZone.addEventListener(t, (e) => { e.preventDefault(); vZone.classList.add("dragover"); }));
  ["dragleave", "drop"].forEach((t) =>
    vZone.addEventListener(t, () => vZone.classList.remove("dragover")));
  vZone.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) uploadVolume(f);
  });
  slider.addEventListener("input", () => showSlice(Number(slider.value)));
  // arrow keys on the slice image too (the slider handles them itself when it has the focus)
  $("volume-img").addEventListener("keydown", (e) => {
    const step = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1 }[e.key];
    if (step && volume) { e.preventDefault(); showSlice(Number(slider.value) + step); }
  });
  $("show-contour").addEventListener("change", (e) => { $("contour-img").hidden = !e.target.checked; });
})();
