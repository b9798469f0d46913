// Ferry console: the uploader. A tus 1.0 client in plain JavaScript with the Swift client's
// habits: requests sized to ~3 s at the measured goodput, stalls detected by missing progress
// (not one fixed timeout), retries with backoff and jitter for as long as progress is possible,
// and resume across reloads (file fingerprint -> upload URL in localStorage). Files the server
// already holds are stored without sending them (instant upload, docs/instant-upload.md) where
// the browser offers Web Crypto (a secure context: HTTPS or localhost).
"use strict";

const STORE_PREFIX = "ferry.upload.";
const MIN_CHUNK = 256 * 1024, MAX_CHUNK = 64 * 1024 * 1024, FIRST_CHUNK = 1024 * 1024;
const TARGET_SECONDS = 3, STALL_SECONDS = 10, GIVE_UP_SECONDS = 24 * 3600, RUNNING_AT_ONCE = 3;
// Web Crypto hashes a whole buffer (no streaming): files up to this size are announced.
const INSTANT_LIMIT = 32 * 1024 * 1024, INSTANT_MAX_RANGES = 16, INSTANT_MAX_BYTES = 16 * 4096;

function fingerprint(file, scenario) {
  return `${STORE_PREFIX}${scenario}|${file.name}|${file.size}|${file.lastModified}`;
}

class PermanentError extends Error {}

class ConsoleUpload {
  constructor(file, scenario, token, uploadsPath) {
    Object.assign(this, { file, scenario, token, uploadsPath });
    this.key = fingerprint(file, scenario);
    this.offset = 0;
    this.chunk = FIRST_CHUNK;
    this.state = "queued";
    this.rate = null;
    this.failures = 0;
    this.stalls = 0;
    this.requests = 0;
    this.resumedFrom = null;
    this.paused = false;
    this.needsLocate = true;
    this.xhr = null;
    this.row = this.makeRow();
  }

  headers(extra = {}) {
    const headers = { "Tus-Resumable": "1.0.0", "Ferry-Client": "console", "Ferry-Network": networkKind(), ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  async run() {
    const began = Date.now();
    this.state = "uploading";
    this.render();
    while (!this.paused) {
      try {
        if (!this.url) this.url = localStorage.getItem(this.key) && JSON.parse(localStorage.getItem(this.key)).url;
        if (!this.url) await this.create();
        else if (this.needsLocate) await this.locate();
        this.needsLocate = false;
        if (this.offset >= this.file.size) return this.finish();
        await this.send();
        if (this.offset >= this.file.size) return this.finish();
      } catch (error) {
        if (this.paused) break;
        if (error instanceof PermanentError) return this.fail(error.message);
        this.needsLocate = true;
        this.failures++;
        if ((Date.now() - began) / 1000 > GIVE_UP_SECONDS) return this.fail(`gave up after ${this.failures} failures: ${error.message}`);
        const ceiling = Math.min(30, 2 ** Math.min(this.failures - 1, 5));
        const delay = this.failures === 1 ? 0 : ceiling / 2 + Math.random() * ceiling / 2;
        this.state = "retrying";
        this.note = `${error.message}; retry in ${delay.toFixed(1)} s`;
        this.render();
        await new Promise(resolve => setTimeout(resolve, delay * 1000));
        if (!this.paused) { this.state = "uploading"; this.note = ""; this.render(); }
      }
    }
    this.state = "paused";
    this.render();
  }

  async create() {
    const metadata = [`filename ${base64(this.file.name)}`];
    if (this.file.type) metadata.push(`filetype ${base64(this.file.type)}`);
    const fields = { "Upload-Length": String(this.file.size), "Upload-Metadata": metadata.join(",") };
    const digest = await this.announcement();
    if (digest) fields["Repr-Digest"] = `sha-256=:${digest}:`;
    const response = await fetch(`${this.uploadsPath}${encodeURIComponent(this.scenario)}/`, { method: "POST", headers: this.headers(fields) });
    this.requests++;
    if (response.status !== 201) await this.refuse(response, "creation");
    this.url = new URL(response.headers.get("Location"), location.href).href;
    this.offset = 0;
    this.remember();
    const challenge = digest && response.headers.get("Ferry-Challenge");
    if (challenge) await this.prove(challenge).catch(() => {});
  }

  // The file's SHA-256 (Base64) when the scenario offers instant upload and Web Crypto is
  // there; null otherwise (the file is then sent as usual).
  async announcement() {
    if (this.digest !== undefined) return this.digest;
    this.digest = null;
    if (!(window.crypto && crypto.subtle) || this.file.size === 0 || this.file.size > INSTANT_LIMIT) return null;
    if (!(await instantOffered(this.uploadsPath, this.scenario))) return null;
    this.note = "hashing";
    this.render();
    try {
      this.digest = bytesToBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", await this.file.arrayBuffer())));
    } catch {
      this.digest = null;
    }
    this.note = "";
    return this.digest;
  }

  // Answers the challenge from the challenged ranges of the file: HMAC-SHA256 keyed by the
  // nonce. A wrong or refused answer leaves an ordinary empty upload: the bytes follow.
  async prove(field) {
    const challenge = parseChallenge(field, this.file.size);
    if (!challenge) return;
    const parts = [new TextEncoder().encode(`ferry-instant-1\n${this.file.size}\n${challenge.text}\n`)];
    for (const [first, last] of challenge.ranges) parts.push(new Uint8Array(await this.file.slice(first, last + 1).arrayBuffer()));
    const key = await crypto.subtle.importKey("raw", challenge.nonce, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const proof = new Uint8Array(await crypto.subtle.sign("HMAC", key, await new Blob(parts).arrayBuffer()));
    const response = await fetch(this.url, {
      method: "PATCH",
      headers: this.headers({ "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream", "Ferry-Proof": `:${bytesToBase64(proof)}:` }),
    });
    this.requests++;
    if (response.status === 204 && Number(response.headers.get("Upload-Offset")) === this.file.size) {
      this.offset = this.file.size;
      this.instant = true;
      this.business = response.headers.get("Ferry-Business-Result") || this.business;
    }
  }

  async locate() {
    const response = await fetch(this.url, { method: "HEAD", headers: this.headers() });
    this.requests++;
    if (response.status === 404 || response.status === 410) {
      // The server no longer has it (expired): start over.
      this.forget();
      this.url = null;
      throw new Error(`the upload is gone (${response.status}); starting over`);
    }
    if (!response.ok) await this.refuse(response, "offset retrieval");
    const offset = Number(response.headers.get("Upload-Offset"));
    if (this.resumedFrom === null && offset > 0 && this.offset === 0) this.resumedFrom = offset;
    this.offset = offset;
    this.render();
  }

  // One PATCH of the current size; the goodput it measures sizes the next one.
  send() {
    const start = this.offset, end = Math.min(this.file.size, start + this.chunk);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      const began = performance.now();
      let lastProgress = began, sent = 0;
      const watchdog = setInterval(() => {
        if (performance.now() - lastProgress > STALL_SECONDS * 1000) {
          this.stalls++;
          this.chunk = Math.max(MIN_CHUNK, Math.floor(this.chunk / 4));
          xhr.abort();
        }
      }, 1000);
      xhr.upload.onprogress = event => {
        lastProgress = performance.now();
        sent = event.loaded;
        this.inFlight = sent;
        this.render();
      };
      const done = error => {
        clearInterval(watchdog);
        this.xhr = null;
        this.inFlight = 0;
        if (error) reject(error); else resolve();
      };
      xhr.onload = () => {
        this.requests++;
        if (xhr.status === 204) {
          const seconds = (performance.now() - began) / 1000;
          const bytes = end - start;
          const measured = bytes / Math.max(seconds, 0.001);
          this.rate = this.rate == null ? measured : this.rate * 0.5 + measured * 0.5;
          const wanted = Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.round(this.rate * TARGET_SECONDS)));
          this.chunk = Math.min(wanted, this.chunk * 4);
          this.offset = Number(xhr.getResponseHeader("Upload-Offset"));
          this.failures = 0;
          this.business = xhr.getResponseHeader("Ferry-Business-Result") || this.business;
          this.remember();
          this.render();
          done();
        } else if (xhr.status === 409) {
          done(new Error("offset mismatch"));
        } else if ([400, 401, 403, 413, 415].includes(xhr.status)) {
          done(new PermanentError(`${xhr.status} ${xhr.getResponseHeader("Ferry-Error") || ""} ${xhr.responseText}`.trim()));
        } else {
          done(new Error(`PATCH answered ${xhr.status}`));
        }
      };
      xhr.onerror = () => done(new Error("the connection failed"));
      xhr.onabort = () => done(new Error(this.paused ? "paused" : `stalled (no progress for ${STALL_SECONDS} s)`));
      xhr.open("PATCH", this.url);
      for (const [name, value] of Object.entries(this.headers({ "Upload-Offset": String(start), "Content-Type": "application/offset+octet-stream" }))) {
        xhr.setRequestHeader(name, value);
      }
      xhr.send(this.file.slice(start, end));
    });
  }

  async refuse(response, what) {
    const text = (await response.text()).trim();
    const message = `${what}: ${response.status} ${response.headers.get("Ferry-Error") || ""} ${text}`.trim();
    if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) throw new PermanentError(message);
    throw new Error(message);
  }

  remember() {
    localStorage.setItem(this.key, JSON.stringify({ url: this.url, name: this.file.name, size: this.file.size, scenario: this.scenario, offset: this.offset }));
  }

  forget() { localStorage.removeItem(this.key); }

  finish() {
    this.offset = this.file.size;
    this.state = "complete";
    this.forget();
    this.render();
    // Tell the server how it went (best effort).
    const id = this.url.split("/").pop();
    fetch(`/telemetry/${id}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}) },
      body: JSON.stringify({ stalls: this.stalls, retries: this.failures, requests: this.requests, network: networkKind(), client: "console", lastChunk: this.chunk }),
    }).catch(() => {});
    scheduleUploads();
  }

  fail(message) {
    this.state = "failed";
    this.note = message;
    this.render();
    scheduleUploads();
  }

  pause() {
    this.paused = true;
    if (this.xhr) this.xhr.abort();
    this.state = "paused";
    this.render();
  }

  resume() {
    if (this.state === "complete" || this.state === "failed") return;
    this.paused = false;
    this.needsLocate = true;
    this.state = "queued";
    this.render();
    scheduleUploads();
  }

  makeRow() {
    const row = el("tr", { "data-name": this.file.name });
    this.cells = {
      name: el("td", {}, this.file.name, el("div", { class: "muted" }, formatBytes(this.file.size))),
      progress: el("td"), rate: el("td", { class: "num" }), eta: el("td", { class: "num" }), state: el("td", { class: "state" }),
      actions: el("td"),
    };
    this.bar = el("span");
    this.percent = el("span", { class: "percent" });
    this.cells.progress.append(el("div", { class: "bar" }, this.bar), this.percent);
    this.button = el("button", { onclick: () => (this.paused ? this.resume() : this.pause()) }, "Pause");
    this.cells.actions.append(this.button);
    row.append(...Object.values(this.cells));
    return row;
  }

  render() {
    const done = this.offset + (this.inFlight || 0);
    const ratio = this.file.size ? Math.min(1, done / this.file.size) : 1;
    this.bar.style.width = `${(ratio * 100).toFixed(1)}%`;
    this.percent.textContent = ` ${(ratio * 100).toFixed(1)}%`;
    this.cells.rate.textContent = this.state === "uploading" ? formatRate(this.rate) : "–";
    this.cells.eta.textContent = this.state === "uploading" && this.rate ? formatSeconds((this.file.size - done) / this.rate) : "–";
    let text = this.state;
    if (this.resumedFrom) text += ` (resumed from ${formatBytes(this.resumedFrom)})`;
    if (this.note) text += ` — ${this.note}`;
    if (this.state === "complete" && this.instant) text += " — stored instantly";
    if (this.state === "complete" && this.business) text += ` — ${this.business}`;
    this.cells.state.textContent = text;
    this.cells.state.className = `state state-${this.state}`;
    this.row.dataset.state = this.state;
    this.row.dataset.offset = String(this.offset);
    if (this.instant) this.row.dataset.instant = "true";
    if (this.resumedFrom) this.row.dataset.resumedFrom = String(this.resumedFrom);
    if (this.url) this.row.dataset.url = this.url;
    this.button.textContent = this.paused ? "Resume" : "Pause";
    this.button.disabled = this.state === "complete" || this.state === "failed";
  }
}

const uploads = [];
const instantOffers = new Map();

// Whether the scenario's OPTIONS says `Ferry-Instant-Upload: sha-256` (asked once per scenario).
function instantOffered(uploadsPath, scenario) {
  if (!instantOffers.has(scenario)) {
    instantOffers.set(scenario, fetch(`${uploadsPath}${encodeURIComponent(scenario)}/`, { method: "OPTIONS" })
      .then(response => (response.headers.get("Ferry-Instant-Upload") || "").split(",").some(v => v.trim() === "sha-256"))
      .catch(() => false));
  }
  return instantOffers.get(scenario);
}

// `nonce=:…:, ranges="a-b,…", expires=T` as a client may accept it: sorted, disjoint ranges
// inside the file, at most 16 of them and 64 KiB in all, a 32-byte nonce; null otherwise.
function parseChallenge(field, size) {
  const nonce = /(?:^|[,;\s])nonce=:([A-Za-z0-9+/=]+):/.exec(field), text = /(?:^|[,;\s])ranges="([0-9,-]+)"/.exec(field);
  if (!nonce || !text) return null;
  let key;
  try { key = Uint8Array.from(atob(nonce[1]), c => c.charCodeAt(0)); } catch { return null; }
  const ranges = text[1].split(",").map(pair => pair.split("-").map(Number));
  let next = 0, total = 0;
  for (const range of ranges) {
    if (range.length !== 2 || !range.every(Number.isSafeInteger) || range[0] < next || range[1] < range[0] || range[1] >= size) return null;
    total += range[1] - range[0] + 1;
    next = range[1] + 1;
  }
  if (key.length !== 32 || ranges.length === 0 || ranges.length > INSTANT_MAX_RANGES || total > INSTANT_MAX_BYTES) return null;
  return { nonce: key, ranges, text: text[1] };
}

function bytesToBase64(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function scheduleUploads() {
  let running = uploads.filter(u => u.state === "uploading" || u.state === "retrying").length;
  for (const upload of uploads) {
    if (running >= RUNNING_AT_ONCE) break;
    if (upload.state === "queued" && !upload.paused) {
      running++;
      upload.run();
    }
  }
  showUnfinished();
}

async function addFiles(files) {
  const config = await loadConfig();
  const scenario = $("#scenario").value;
  const token = $("#token").value.trim();
  localStorage.setItem("ferry.token", token);
  for (const file of files) {
    const upload = new ConsoleUpload(file, scenario, token, config.uploads);
    uploads.push(upload);
    $("#uploads tbody").append(upload.row);
    upload.render();
  }
  scheduleUploads();
}

// Uploads a reload left unfinished: choosing the same file again resumes them.
function showUnfinished() {
  const box = $("#unfinished");
  const active = new Set(uploads.map(u => u.key));
  const left = Object.keys(localStorage).filter(key => key.startsWith(STORE_PREFIX) && !active.has(key))
    .map(key => { try { return JSON.parse(localStorage.getItem(key)); } catch { return null; } }).filter(Boolean);
  box.replaceChildren();
  if (left.length === 0) return;
  box.append(el("div", {}, `Unfinished from before (choose the same file to resume): `,
    left.map(u => `${u.name} (${formatBytes(u.offset || 0)} of ${formatBytes(u.size)}, ${u.scenario})`).join("; ")));
}

async function initUploader() {
  const config = await loadConfig();
  const select = $("#scenario");
  for (const scenario of config.scenarios) {
    select.append(el("option", { value: scenario.name }, scenario.anonymous ? scenario.name : `${scenario.name} (token)`));
  }
  if (config.defaultScenario) select.value = config.defaultScenario;
  const rules = () => {
    const scenario = config.scenarios.find(s => s.name === select.value);
    if (!scenario) return;
    const parts = [];
    if (scenario.maxSize) parts.push(`up to ${formatBytes(scenario.maxSize)}`);
    if (scenario.contentTypes.length) parts.push(scenario.contentTypes.join(", "));
    $("#scenario-rules").textContent = parts.join(" · ");
  };
  select.addEventListener("change", rules);
  rules();
  $("#token").value = localStorage.getItem("ferry.token") || "";
  $("#files").addEventListener("change", event => { addFiles([...event.target.files]); event.target.value = ""; });
  const drop = $("#drop");
  drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", event => { event.preventDefault(); drop.classList.remove("over"); addFiles([...event.dataTransfer.files]); });
  showUnfinished();
}

initUploader().catch(error => { $("#scenario-rules").textContent = `the console could not start: ${error.message}`; });
