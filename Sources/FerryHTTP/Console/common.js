// Ferry console: helpers shared by the uploader and the dashboard. Plain JavaScript, no build.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function formatBytes(bytes) {
  if (bytes == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

function formatRate(bytesPerSecond) {
  return bytesPerSecond == null || !isFinite(bytesPerSecond) ? "–" : `${formatBytes(bytesPerSecond)}/s`;
}

function formatSeconds(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function formatPercent(ratio) {
  return ratio == null ? "–" : `${(ratio * 100).toFixed(ratio >= 0.995 || ratio === 0 ? 0 : 1)}%`;
}

// Base64 of UTF-8 text (tus metadata values).
function base64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

// The network the browser believes it is on, in Ferry's terms (Ferry-Network).
function networkKind() {
  const connection = navigator.connection;
  if (!connection) return "unknown";
  if (connection.type === "wifi" || connection.type === "ethernet") return connection.type === "wifi" ? "wifi" : "wired";
  const effective = { "slow-2g": "2g", "2g": "2g", "3g": "3g", "4g": "4g" }[connection.effectiveType];
  return connection.type === "cellular" ? (effective || "cellular") : "unknown";
}

async function fetchJSON(path, token) {
  const response = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!response.ok) {
    const error = new Error(`${response.status} ${response.headers.get("Ferry-Error") || response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

let consoleConfig = null;
async function loadConfig() {
  if (!consoleConfig) consoleConfig = await fetchJSON("/console/config");
  return consoleConfig;
}

// Tabs.
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) other.classList.toggle("active", other === tab);
    for (const view of document.querySelectorAll(".view")) view.classList.toggle("hidden", view.id !== `view-${tab.dataset.view}`);
    if (location.hash !== `#${tab.dataset.view}`) history.replaceState(null, "", `#${tab.dataset.view}`);
    document.dispatchEvent(new CustomEvent("ferry:view", { detail: tab.dataset.view }));
  });
}
function followHash() {
  if (location.hash === "#dashboard") $("#tab-dashboard").click();
  if (location.hash === "#upload") $("#tab-upload").click();
}
window.addEventListener("DOMContentLoaded", followHash);
window.addEventListener("hashchange", followHash);
