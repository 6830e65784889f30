// The seller's status page: polls /api/status; the pause button POSTs with the page's token.
"use strict";

const TOKEN = document.querySelector("meta[name=bitwrk-token]").content;
const EXCHANGE = document.querySelector("meta[name=bitwrk-exchange]").content;
let current = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const sat = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US") + " sat");
const short = (a) => (a && a.length > 16 ? a.slice(0, 8) + "…" + a.slice(-6) : a || "");
const clock = (t) => new Date(t * 1000).toTimeString().slice(0, 8);
const txLink = (txid) => el("a", { href: `${EXCHANGE}/tx/${txid}`, target: "_blank",
                                   rel: "noopener", text: "#" + txid });

function stat(label, value, id, cls) {
  return el("div", { class: "stat" }, el("div", { class: "label", text: label }),
            el("div", { class: "value " + (cls || ""), id, text: value }));
}

function table(headers, rows, empty) {
  if (rows.length === 0) return el("p", { class: "empty", text: empty });
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) =>
    el("th", { class: h.endsWith(" ") ? "num" : null, text: h.trim() })))), el("tbody", {}, ...rows));
}

function slotRow(s) {
  const busy = s.txid !== undefined;
  const progress = busy ? el("span", {},
    el("span", { class: "progress", title: `step ${s.step} of ${s.steps}` },
       el("span", { style: `width:${(100 * s.step) / s.steps}%` })),
    el("span", { class: "stage", text: s.stage })) : el("span", { class: "muted", text: "—" });
  return el("tr", { "data-slot": s.slot, "data-stage": busy ? s.stage : s.state },
    el("td", { text: "#" + s.slot }), el("td", { text: busy ? "working" : s.state }),
    el("td", {}, busy ? txLink(s.txid) : ""),
    el("td", { class: "mono", title: s.buyer || "", text: busy ? short(s.buyer) : "" }),
    el("td", {}, progress),
    el("td", { class: "num", text: busy ? s.elapsed.toFixed(1) + " s" : "" }),
    el("td", { class: "num", text: busy ? sat(s.price) : "" }));
}

function unitRow(u) {
  return el("tr", { "data-txid": u.txid, "data-stage": u.stage },
    el("td", { class: "mono", text: clock(u.time) }), el("td", {}, txLink(u.txid)),
    el("td", { class: "mono", title: u.buyer, text: short(u.buyer) }),
    el("td", {}, el("span", { class: "badge " + u.stage, text: u.stage }),
       u.stage === "failed" && u.detail ? el("span", { class: "muted", text: " " + u.detail }) : null),
    el("td", { class: "num", text: u.seconds ? u.seconds.toFixed(2) + " s" : "" }),
    el("td", { class: "num", text: sat(u.price) }),
    el("td", { class: "num earned", text: u.earned ? "+" + sat(u.earned) : "" }));
}

function render(s) {
  current = s;
  document.body.dataset.paused = s.paused ? "1" : "0";
  const who = document.getElementById("who");
  const reach = s.reach ? ` · ${s.reach.mode}` : "";  // "direct" or "via relay"
  who.textContent = `${s.address} · ${s.exchange}${reach}`;
  const button = document.getElementById("pause");
  button.disabled = s.stopping;
  button.textContent = s.paused ? "Resume selling" : "Pause selling";
  button.className = s.paused ? "resume" : "";
  const b = s.balance;
  document.getElementById("stats").replaceChildren(...[
    stat("state", s.stopping ? "stopping" : s.paused ? "paused" : "selling", "state",
         s.paused ? "state-paused" : "state-selling"),
    stat("balance available", sat(b.available), "available"),
    stat("blocked", sat(b.blocked), "blocked"),
    stat("earned this session", sat(s.earned), "earned"),
    stat("min price", sat(s.offer.min_price)),
    stat("articles", s.offer.articles.map((a) => a.split("/").slice(2).join(" ")).join(", ")),
    b.error ? el("div", { class: "notice", text: b.error }) : null].filter(Boolean));
  document.getElementById("slots").replaceChildren(table(
    ["slot", "state", "unit", "buyer", "progress", "elapsed ", "price "],
    s.slots.map(slotRow), "no slots"));
  document.getElementById("units").replaceChildren(table(
    ["time", "unit", "buyer", "stage", "render ", "price ", "earned "],
    s.units.map(unitRow), "no units yet"));
  document.getElementById("errors").replaceChildren(s.errors.length === 0
    ? el("p", { class: "empty", text: "none" })
    : el("ul", { class: "errors" }, ...s.errors.map((e) =>
        el("li", {}, el("span", { class: "mono", text: clock(e.time) + "  " }), e.text))));
}

async function refresh() {
  const live = document.getElementById("live");
  try {
    const resp = await fetch("/api/status", { cache: "no-store" });
    render(await resp.json());
    live.className = "live on";
    live.textContent = "live";
  } catch (err) {
    live.className = "live";
    live.textContent = "seller not answering";
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, 500);
}

document.getElementById("pause").addEventListener("click", async (ev) => {
  if (!current) return;
  ev.target.disabled = true;
  const resp = await fetch("/api/pause", {
    method: "POST", headers: { "Content-Type": "application/json", "X-BitWrk-Token": TOKEN },
    body: JSON.stringify({ paused: !current.paused }),
  });
  if (!resp.ok) console.warn("pause refused:", resp.status, await resp.text());
  await refresh();
});

poll();
