# ruff: noqa: E501  (the page is HTML and JavaScript, wrapped as written)
"""The web page served at `/`: drop an image, see the prediction, the mask or explanation overlay, the model card.

Plain HTML and JavaScript in one string, no build step; it talks to the app's own /predict, /explain and /model.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medattn</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
 #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem; text-align: center; cursor: pointer; }
 #drop.over { background: #eef; }
 .row { display: flex; gap: 1.5rem; align-items: flex-start; margin-top: 1rem; flex-wrap: wrap; }
 canvas, img.result { max-width: 28rem; image-rendering: pixelated; border: 1px solid #ccc; }
 pre { background: #f6f6f6; padding: .8rem; overflow: auto; max-height: 24rem; }
 #error { color: #b00; }
</style></head>
<body>
<h1>medattn</h1>
<p id="about">loading the model card…</p>
<label>Token (if the server wants one) <input id="token" type="password" size="24"></label>
<div id="drop" tabindex="0">Drop a PNG, JPEG, DICOM, NIfTI or npz image here, or click to choose one
 <input id="file" type="file" hidden></div>
<p><button id="explain" disabled>Explain this prediction</button></p>
<p id="error" role="alert"></p>
<h2>Prediction</h2>
<p id="result">no image yet</p>
<div class="row"><canvas id="view" width="0" height="0"></canvas><img id="overlay" class="result" alt=""></div>
<h2>Model card</h2><pre id="card"></pre>
<script>
const $ = (id) => document.getElementById(id);
let chosen = null;
const headers = () => $("token").value ? { Authorization: "Bearer " + $("token").value } : {};

async function card() {
  const answer = await fetch("model", { headers: headers() });
  const body = await answer.json();
  if (!answer.ok) { $("about").textContent = body.error; return; }
  $("card").textContent = JSON.stringify(body, null, 1);
  $("about").textContent = body.task + " model " + body.model.name + ", classes: " + (body.class_names || []).join(", ");
}

function summary(prediction) {
  if (prediction.probabilities) {
    const probs = Object.entries(prediction.probabilities).map(([k, v]) => k + " " + v.toFixed(3)).join(", ");
    return "class " + JSON.stringify(prediction.class) + " (" + probs + ")";
  }
  if (prediction.values) return Object.entries(prediction.values).map(([k, v]) => k + " = " + v.toPrecision(4)).join(", ");
  if (prediction.volumes)
    return "mask " + prediction.mask + ": " + Object.entries(prediction.volumes).map(([k, v]) => k + " " + v.toFixed(1) + " " + prediction.unit).join(", ");
  return JSON.stringify(prediction);
}

async function show(mask) {  // the picture with the mask over it in red, where the browser can draw the picture
  const canvas = $("view"), ctx = canvas.getContext("2d");
  let picture;
  try { picture = await createImageBitmap(chosen); } catch (e) { canvas.width = 0; return; }
  canvas.width = picture.width; canvas.height = picture.height;
  ctx.drawImage(picture, 0, 0);
  if (!mask || mask.media_type !== "image/png") return;
  const labels = await createImageBitmap(await (await fetch("data:image/png;base64," + mask.base64)).blob());
  const off = new OffscreenCanvas(labels.width, labels.height), octx = off.getContext("2d");
  octx.drawImage(labels, 0, 0);
  const seen = octx.getImageData(0, 0, labels.width, labels.height), over = ctx.getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < seen.data.length; i += 4) if (seen.data[i] > 0) { over.data[i] = 255; over.data[i + 1] *= 0.4; over.data[i + 2] *= 0.4; }
  ctx.putImageData(over, 0, 0);
}

async function predict(file) {
  chosen = file; $("error").textContent = ""; $("result").textContent = "predicting " + file.name + "…";
  const form = new FormData(); form.append("file", file);
  const answer = await fetch("predict", { method: "POST", body: form, headers: headers() });
  const body = await answer.json();
  if (!answer.ok) { $("error").textContent = answer.status + ": " + body.error; $("result").textContent = "no prediction"; return; }
  $("result").textContent = file.name + ": " + summary(body.prediction);
  $("explain").disabled = false;
  await show(body.files.mask);
}

$("explain").onclick = async () => {
  const form = new FormData(); form.append("file", chosen);
  const answer = await fetch("explain", { method: "POST", body: form, headers: headers() });
  if (!answer.ok) { $("error").textContent = answer.status + ": " + (await answer.json()).error; return; }
  $("overlay").src = URL.createObjectURL(await answer.blob());
};
$("drop").onclick = () => $("file").click();
$("file").onchange = () => $("file").files.length && predict($("file").files[0]);
$("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
$("drop").ondragleave = () => $("drop").classList.remove("over");
$("drop").ondrop = (e) => { e.preventDefault(); $("drop").classList.remove("over"); predict(e.dataTransfer.files[0]); };
$("token").onchange = card;
card();
</script>
</body></html>
"""
