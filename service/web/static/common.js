// Shared helpers for the exchange pages. Every value from the server is put into the page
// with textContent (never as HTML), so addresses, reasons and documents cannot inject markup.
"use strict";

const bw = {
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else if (key === "style") node.style.cssText = value; // CSSOM: allowed by the CSP
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  },

  svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  },

  replace(target, ...children) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
    return node;
  },

  async json(path) {
    const resp = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.message || body.error || resp.statusText);
    return body;
  },

  sat(value) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en-US") + " sat";
  },

  signed(value) {
    const text = bw.sat(Math.abs(value));
    return (value > 0 ? "+" : value < 0 ? "−" : "") + text;
  },

  time(seconds) {
    if (!seconds) return "–";
    const d = new Date(seconds * 1000);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
      `.${pad(d.getMilliseconds(), 3)}`;
  },

  date(seconds) {
    if (!seconds) return "–";
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  },

  short(address) {
    return address && address.length > 16
      ? address.slice(0, 8) + "…" + address.slice(-6) : address || "";
  },

  accountLink(address) {
    if (!address || address === "exchange") return bw.el("span", { class: "muted", text: address || "–" });
    return bw.el("a", { href: "/account/" + encodeURIComponent(address), class: "addr",
                        title: address, text: bw.short(address) });
  },

  txLink(txid) {
    return bw.el("a", { href: "/tx/" + txid, text: "#" + txid });
  },

  articleName(article) {
    // net.bitwrk/blender/5.0/512M -> Blender 5.0 · 512M · CPU
    // net.bitwrk/blender/5.0/2G~gpu~trusted -> Blender 5.0 · 2G · GPU · trusted
    const parts = article.split("/");
    if (parts.length === 4 && parts[1] === "blender") {
      const [cls, ...flags] = parts[3].split("~");
      const device = flags.includes("gpu") ? "GPU" : "CPU";
      const rest = flags.filter((f) => f !== "gpu");
      return [`Blender ${parts[2]}`, cls, device, ...rest].join(" · ");
    }
    return article;
  },

  // Follow the exchange's event stream; `onEvent(kind, data)`; reconnects by itself
  // (EventSource does), and calls `onOpen` after every (re)connect so the page can re-read.
  live(url, kinds, onEvent, onOpen) {
    const badge = document.getElementById("live");
    const source = new EventSource(url);
    source.addEventListener("hello", () => {
      if (badge) { badge.classList.add("on"); badge.textContent = "live"; }
      document.body.dataset.live = "1";
      if (onOpen) onOpen();
    });
    source.onerror = () => {
      if (badge) { badge.classList.remove("on"); badge.textContent = "reconnecting"; }
      document.body.dataset.live = "0";
    };
    for (const kind of kinds) {
      source.addEventListener(kind, (msg) => onEvent(kind, JSON.parse(msg.data)));
    }
    return source;
  },

  // Coalesce a burst of events into one refresh (a matched trade brings several at once).
  debounce(fn, ms = 40) {
    let timer = null;
    return () => {
      if (timer !== null) return;
      timer = setTimeout(() => { timer = null; fn(); }, ms);
    };
  },

  header() {
    bw.json("/api/v1/info").then((info) => {
      document.getElementById("exchange-meta").textContent =
        `${info.exchange} · ${info.network} · fee ${(info.fee_bps / 100).toFixed(2)} %` +
        ` · v${info.version}`;
    }).catch(() => {});
    const form = document.getElementById("lookup");
    if (form) {
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const value = form.elements.q.value.trim();
        if (/^\d+$/.test(value)) location.href = "/tx/" + value;
        else if (value) location.href = "/account/" + encodeURIComponent(value);
      });
    }
  },
};
