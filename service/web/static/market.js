// The market page: every article's book, last trades and price chart, kept live.
"use strict";

const markets = new Map(); // article -> latest /api/v1/market view
const pending = new Map(); // article -> debounced refresh

function articleCard(article) {
  const id = "article-" + article.replace(/[^A-Za-z0-9]/g, "_");
  let card = document.getElementById(id);
  if (!card) {
    card = bw.el("section", { class: "card article", id, "data-article": article });
    const list = document.getElementById("articles");
    list.querySelector(".empty")?.remove();
    const after = [...list.children].find((c) => c.dataset.article > article);
    list.insertBefore(card, after || null);
  }
  return card;
}

function depthTable(levels, side) {
  if (levels.length === 0) return bw.el("p", { class: "empty", text: "no " + side + " bids" });
  const most = Math.max(...levels.map((l) => l.count));
  const rows = levels.slice(0, 12).map((level) => {
    const bar = bw.el("span", { class: "bar " + side,
                                style: `width:${(100 * level.count) / most}%` });
    return bw.el("tr", { "data-side": side, "data-price": level.price },
      bw.el("td", { class: "num " + side, text: bw.sat(level.price) }),
      bw.el("td", { class: "num" }, bar, String(level.count)));
  });
  return bw.el("table", { class: "depth" },
    bw.el("thead", {}, bw.el("tr", {}, bw.el("th", { class: "num", text: "price" }),
                                       bw.el("th", { class: "num", text: "bids" }))),
    bw.el("tbody", {}, ...rows));
}

function tradesTable(trades) {
  if (trades.length === 0) return bw.el("p", { class: "empty", text: "no trades yet" });
  const rows = trades.slice(0, 10).map((t) => bw.el("tr", { "data-txid": t.txid },
    bw.el("td", {}, bw.txLink(t.txid)),
    bw.el("td", { class: "mono", text: bw.time(t.time) }),
    bw.el("td", { class: "num", text: bw.sat(t.price) })));
  return bw.el("table", { class: "trades" },
    bw.el("thead", {}, bw.el("tr", {}, bw.el("th", { text: "transaction" }),
      bw.el("th", { text: "matched" }), bw.el("th", { class: "num", text: "price" }))),
    bw.el("tbody", {}, ...rows));
}

function stat(label, value, cls) {
  return bw.el("div", { class: "stat" }, bw.el("div", { class: "label", text: label }),
               bw.el("div", { class: "value " + (cls || ""), text: value }));
}

function renderArticle(view) {
  const bestBid = view.bids.length ? view.bids[0].price : null;
  const bestAsk = view.asks.length ? view.asks[0].price : null;
  const last = view.trades.length ? view.trades[0].price : null;
  const count = (levels) => levels.reduce((n, l) => n + l.count, 0);
  bw.replace(articleCard(view.article),
    bw.el("h2", {}, bw.articleName(view.article) + "  ",
          bw.el("span", { class: "mono muted", text: view.article })),
    bw.el("div", { class: "stats" },
      stat("best bid", bw.sat(bestBid), "buy best-bid"),
      stat("best ask", bw.sat(bestAsk), "sell best-ask"),
      stat("spread", bestBid !== null && bestAsk !== null ? bw.sat(bestAsk - bestBid) : "–"),
      stat("last price", bw.sat(last), "last-price"),
      stat("open bids", `${count(view.bids)} buy · ${count(view.asks)} sell`)),
    bw.el("div", { class: "grid" },
      bw.el("div", {}, bw.el("h3", { text: "buy side (bids)" }), depthTable(view.bids, "buy")),
      bw.el("div", {}, bw.el("h3", { text: "sell side (asks)" }), depthTable(view.asks, "sell")),
      bw.el("div", { class: "chart" }, bw.el("h3", { text: "price" }), priceChart(view.trades))),
    bw.el("h3", { text: "last trades" }), tradesTable(view.trades));
}

async function refreshArticle(article) {
  try {
    const view = await bw.json("/api/v1/market/" + article);
    markets.set(article, view);
    renderArticle(view);
  } catch (err) {
    console.warn("market", article, err);
  }
}

function scheduleArticle(article) {
  if (!pending.has(article)) pending.set(article, bw.debounce(() => refreshArticle(article)));
  pending.get(article)();
}

async function refreshInfo() {
  const info = await bw.json("/api/v1/info");
  const t = info.totals;
  bw.replace("totals",
    stat("deposited", bw.sat(t.deposits)), stat("available", bw.sat(t.available)),
    stat("blocked in trades", bw.sat(t.blocked)), stat("fees earned", bw.sat(t.fees)),
    stat("articles", String(info.articles.length)));
  if (info.articles.length === 0) {
    bw.replace("articles", bw.el("div", { class: "card empty",
      text: "No bids or trades yet. Articles appear here as soon as someone bids." }));
  }
  return info;
}

const scheduleInfo = bw.debounce(() => refreshInfo().catch(console.warn), 200);

function feed(item) {
  const list = document.getElementById("feed");
  list.querySelector(".empty")?.remove();
  list.prepend(bw.el("li", {}, bw.el("span", { class: "mono muted", text: bw.time(Date.now() / 1000) + "  " }), ...item));
  while (list.children.length > 40) list.lastChild.remove();
}

function onEvent(kind, data) {
  if (kind === "book" || kind === "trade") scheduleArticle(data.article);
  if (kind === "trade") {
    feed(["trade ", bw.txLink(data.txid), ` at ${bw.sat(data.price)} · `,
          bw.articleName(data.article)]);
  } else if (kind === "transaction") {
    feed(["transaction ", bw.txLink(data.id), " → ",
          bw.el("span", { class: "badge " + data.phase, text: data.phase })]);
  }
  if (kind !== "book") scheduleInfo();
}

async function loadAll() {
  const info = await refreshInfo();
  await Promise.all(info.articles.map(refreshArticle));
}

bw.header();
bw.live("/api/v1/events", ["book", "trade", "transaction"], onEvent,
        () => loadAll().catch(console.warn));
