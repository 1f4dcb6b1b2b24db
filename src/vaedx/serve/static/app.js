// vaedx viewer: upload one image to /v1/predict and show score, heatmap overlay, contour and reconstruction.
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
    $("diagnosis").textContent = r.diagnosis
      ? r.diagnosis["class"] + " (probability " + (100 * r.diagnosis.probability).toFixed(1) + "%)"
      : "not available (no diagnosis model attached)";
    $("input-img").src = png(r.input_png);
    $("heatmap-img").src = png(r.heatmap_png);
    $("contour-img").src = png(r.contour.png);
    $("recon-img").src = png(r.reconstruction_png);
    const [h, w] = r.image.model_size;
    $("stack").style.aspectRatio = w + " / " + h;
    const c = r.contour;
    $("contour-info").textContent =
      "Contour at " + fmt(c.level) + " (" + c.source + "): " + c.n_pixels + " pixels, " +
      c.regions.length + " region(s). Image " + r.image.format.toUpperCase() + " " +
      r.image.original_size.join("×") + ", shown at the model's " + h + "×" + w + ".";
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
      setStatus("Done. Score " + fmt(data.score) + ".", false);
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
  $("opacity").addEventListener("input", applyOpacity);
  $("show-contour").addEventListener("change", (e) => { $("contour-img").hidden = !e.target.checked; });
})();
