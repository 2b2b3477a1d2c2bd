// The demo page: four small forms over the JSON API. No framework and no build step.
// Everything that comes from an answer or a file name is inserted with textContent, never as
// HTML; the page is also served with a Content-Security-Policy that allows only this origin.
"use strict";

const TOP_K = 3;
const RECORD_SECONDS = 1.5;
const REASONS = {
  low_confidence: "its confidence is below the threshold chosen on validation data",
  out_of_distribution: "this does not look like what it was trained on",
  no_content: "there is nothing to read in it",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function percent(probability) {
  return `${(100 * probability).toFixed(1)} %`;
}

// POST and time the round trip; the outcome holds the parsed answer or the API's error.
async function post(url, init) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, { method: "POST", ...init });
  } catch (error) {
    return { ok: false, ms: performance.now() - started, error: { message: `network error: ${error.message}` } };
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const ms = performance.now() - started;
  if (response.ok && body && Array.isArray(body.predictions)) return { ok: true, ms, body };
  const error = (body && body.error) || { message: `HTTP ${response.status} ${response.statusText}` };
  return { ok: false, ms, status: response.status, error };
}

function renderPrediction(prediction) {
  const item = el("article", "prediction");
  if (prediction.file !== undefined) item.append(el("p", "file", `file: ${prediction.file}`));
  const head = el("p", "headline");
  head.append(el("span", "label", prediction.label), " ", el("span", "probability", percent(prediction.probability)));
  item.append(head);
  if (prediction.abstain) {
    const reason = prediction.reason ? REASONS[prediction.reason] || prediction.reason : REASONS.low_confidence;
    const unsure = el("p", "unsure");
    unsure.append(el("strong", "", "not sure"), `: ${reason}`);
    if (prediction.reason) unsure.append(" ", el("code", "reason", prediction.reason));
    item.append(unsure);
  }
  const bars = el("ol", "topk");
  bars.setAttribute("aria-label", "most probable classes");
  for (const entry of prediction.top_k || []) {
    const row = el("li");
    const bar = el("span", "bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = el("span", "fill");
    fill.style.width = `${Math.max(0, Math.min(1, entry.probability)) * 100}%`;
    bar.append(fill);
    row.append(el("span", "name", entry.label), bar, el("span", "value", percent(entry.probability)));
    bars.append(row);
  }
  item.append(bars);
  return item;
}

function render(target, outcome) {
  target.replaceChildren();
  if (outcome.ok) {
    for (const prediction of outcome.body.predictions) target.append(renderPrediction(prediction));
    target.append(
      el("p", "meta", `${outcome.body.model} ${outcome.body.version} · answered in ${Math.round(outcome.ms)} ms · request ${outcome.body.request_id}`),
    );
  } else {
    const box = el("p", "error");
    box.setAttribute("role", "alert");
    box.append(el("strong", "", "Error: "), outcome.error.message || "unknown error");
    target.append(box);
    const facts = [outcome.error.code, outcome.error.request_id && `request ${outcome.error.request_id}`, `${Math.round(outcome.ms)} ms`];
    target.append(el("p", "meta", facts.filter(Boolean).join(" · ")));
  }
  target.dataset.state = outcome.ok ? "answered" : "error";
}

function busy(target, text) {
  target.replaceChildren(el("p", "meta", text));
  target.dataset.state = "busy";
}

function uploadForm(file, fields) {
  const form = new FormData();
  form.append("files", file, file.name);
  for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
  return form;
}

// Drop a file on the label of a file input: it becomes the input's file.
function acceptDrops(zone, input) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      input.dispatchEvent(new Event("change"));
    }
  });
  input.addEventListener("change", () => {
    const name = input.files.length ? input.files[0].name : "";
    if (name) zone.querySelector("span").textContent = `chosen: ${name}`;
  });
}

// --- Digit canvas: white strokes on black, as MNIST; the server centres the digit itself. ---
function setUpDigit() {
  const canvas = document.getElementById("digit-canvas");
  const result = document.getElementById("digit-result");
  const context = canvas.getContext("2d");
  let drawing = false;
  let drawn = false;
  let last = null;

  function clear() {
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    drawn = false;
    result.replaceChildren();
    delete result.dataset.state;
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function stroke(to) {
    context.strokeStyle = "#fff";
    context.lineWidth = canvas.width / 14;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(last.x, last.y);
    context.lineTo(to.x, to.y);
    context.stroke();
    last = to;
    drawn = true;
  }

  async function send() {
    if (!drawn) {
      render(result, { ok: false, ms: 0, error: { message: "draw a digit first" } });
      return;
    }
    busy(result, "reading…");
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const file = new File([blob], "digit.png", { type: "image/png" });
    render(result, await post("/predict/image", { body: uploadForm(file, { model: "mnist", top_k: TOP_K }) }));
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = point(event);
    stroke(last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (drawing) stroke(point(event));
  });
  for (const type of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(type, () => {
      if (!drawing) return;
      drawing = false;
      send();
    });
  }
  document.getElementById("digit-clear").addEventListener("click", clear);
  document.getElementById("digit-send").addEventListener("click", send);
  clear();
}

// --- Image upload ---
function setUpImage() {
  const form = document.getElementById("image-form");
  const input = document.getElementById("image-file");
  const preview = document.getElementById("image-preview");
  const result = document.getElementById("image-result");
  acceptDrops(document.getElementById("image-drop"), input);

  // Drawn on a canvas from the file's bytes: no blob: URL, so the page policy stays 'self'.
  input.addEventListener("change", async () => {
    preview.hidden = true;
    if (!input.files.length) return;
    try {
      const bitmap = await createImageBitmap(input.files[0]);
      const scale = Math.min(preview.width / bitmap.width, preview.height / bitmap.height);
      const context = preview.getContext("2d");
      context.imageSmoothingEnabled = scale < 1; // small images (CIFAR-10 is 32×32) stay sharp
      context.clearRect(0, 0, preview.width, preview.height);
      const w = bitmap.width * scale;
      const h = bitmap.height * scale;
      context.drawImage(bitmap, (preview.width - w) / 2, (preview.height - h) / 2, w, h);
      preview.hidden = false;
    } catch {
      // Not an image the browser reads: the server will say what is wrong with it.
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files.length) {
      render(result, { ok: false, ms: 0, error: { message: "pick an image first" } });
      return;
    }
    busy(result, "classifying…");
    const model = document.getElementById("image-model").value;
    render(result, await post("/predict/image", { body: uploadForm(input.files[0], { model, top_k: TOP_K }) }));
  });
}

// --- Review text ---
function setUpSentiment() {
  const form = document.getElementById("sentiment-form");
  const result = document.getElementById("sentiment-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    busy(result, "reading…");
    const text = document.getElementById("sentiment-text").value;
    render(
      result,
      await post("/predict/sentiment", {
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text, top_k: TOP_K }),
      }),
    );
  });
}

// --- Speech: microphone (16-bit PCM mono WAV made here) or a WAV file ---
function wavFile(samples, sampleRate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  const ascii = (offset, text) => [...text].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, 2 * sampleRate, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new File([buffer], "recording.wav", { type: "audio/wav" });
}

// Record RECORD_SECONDS of mono float samples. The context asks for 16 kHz (the model's rate);
// where the browser will not resample, the WAV carries the real rate and the server resamples.
async function record() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  let context;
  try {
    context = new AudioContext({ sampleRate: 16000 });
  } catch {
    context = new AudioContext();
  }
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const needed = Math.round(RECORD_SECONDS * context.sampleRate);
  const chunks = [];
  let collected = 0;
  const samples = await new Promise((resolve) => {
    processor.onaudioprocess = (event) => {
      if (collected >= needed) return;
      const chunk = new Float32Array(event.inputBuffer.getChannelData(0));
      chunks.push(chunk);
      collected += chunk.length;
      if (collected >= needed) {
        const all = new Float32Array(collected);
        let offset = 0;
        for (const c of chunks) {
          all.set(c, offset);
          offset += c.length;
        }
        resolve(all.subarray(0, needed));
      }
    };
    source.connect(processor);
    processor.connect(context.destination);
  });
  processor.disconnect();
  source.disconnect();
  for (const track of stream.getTracks()) track.stop();
  const rate = context.sampleRate;
  await context.close();
  return wavFile(samples, rate);
}

function setUpSpeech() {
  const result = document.getElementById("speech-result");
  const status = document.getElementById("speech-status");
  const button = document.getElementById("speech-record");
  const form = document.getElementById("speech-form");
  const input = document.getElementById("speech-file");
  acceptDrops(document.getElementById("speech-drop"), input);

  async function recognise(file) {
    busy(result, "listening…");
    render(result, await post("/predict/speech", { body: uploadForm(file, { top_k: TOP_K }) }));
  }

  button.addEventListener("click", async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = "this browser gives no microphone here (it needs https or localhost)";
      return;
    }
    button.disabled = true;
    status.textContent = "recording…";
    try {
      const file = await record();
      status.textContent = "";
      await recognise(file);
    } catch (error) {
      status.textContent = `no recording: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files.length) {
      render(result, { ok: false, ms: 0, error: { message: "pick a WAV file first" } });
      return;
    }
    await recognise(input.files[0]);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDigit();
  setUpImage();
  setUpSentiment();
  setUpSpeech();
});
