// One account: balances, its bids and its ledger, page by page; live from its own stream.
"use strict";

const ADDRESS = decodeURIComponent(location.pathname.split("/").pop());
let older = []; // ledger pages fetched with "older" (kept across live refreshes)
let nextBefore = null;

function stat(label, value, id) {
  return bw.el("div", { class: "stat" }, bw.el("div", { class: "label", text: label }),
               bw.el("div", { class: "value", id, text: value }));
}

function bidsTable(bids) {
  if (bids.length === 0) return bw.el("p", { class: "empty", text: "no bids" });
  return bw.el("table", {},
    bw.el("thead", {}, bw.el("tr", {}, ...["bid", "side", "article", "price", "state", "placed",
      "transaction"].map((h) => bw.el("th", { class: h === "price" ? "num" : null, text: h })))),
    bw.el("tbody", {}, ...bids.map((b) => bw.el("tr", { "data-bid": b.id, "data-state": b.state },
      bw.el("td", { text: "#" + b.id }),
      bw.el("td", { class: b.type, text: b.type }),
      bw.el("td", { class: "mono", text: b.article }),
      bw.el("td", { class: "num", text: bw.sat(b.price) }),
      bw.el("td", { text: b.state }),
      bw.el("td", { class: "mono", text: bw.time(b.created) }),
      bw.el("td", {}, b.txid ? bw.txLink(b.txid) : "")))));
}

// The exchange's public record of this address as a seller (issue 10: reputation).
function reputationCard(account) {
  const r = account.reputation || {};
  const barred = account.barred_until
    ? stat("barred from selling until", bw.time(account.barred_until), "barred") : null;
  return bw.el("div", { class: "card" }, bw.el("h2", { text: "Seller record" }),
    bw.el("div", { class: "stats" },
      stat("trades finished", String(r.finished ?? 0), "rep-finished"),
      stat("disputed", String(r.disputed ?? 0), "rep-disputed"),
      stat("disputes lost", String(r.disputes_lost ?? 0), "rep-disputes-lost"),
      stat("missed endpoint (establish timeouts)", String(r.establish_timeouts ?? 0),
           "rep-establish-timeouts"),
      barred));
}

function renderLedger(first) {
  const rows = [...first.movements, ...older];
  const more = older.length ? nextBefore : first.next_before;
  const button = more === null ? null
    : bw.el("button", { class: "btn", id: "older", type: "button", text: "older movements" });
  button?.addEventListener("click", async () => {
    const page = await bw.json(`/api/v1/accounts/${ADDRESS}/ledger?before=${more}`);
    older = older.concat(page.movements);
    nextBefore = page.next_before;
    renderLedger(first);
  });
  bw.replace("ledger", movementsTable(rows, true), button);
}

async function load() {
  let account, ledger, bids;
  try {
    [account, ledger, bids] = await Promise.all([
      bw.json(`/api/v1/accounts/${ADDRESS}`), bw.json(`/api/v1/accounts/${ADDRESS}/ledger`),
      bw.json(`/api/v1/accounts/${ADDRESS}/bids?limit=20`)]);
  } catch (err) {
    bw.replace("page", bw.el("div", { class: "error", text: String(err.message || err) }));
    return;
  }
  bw.replace("page",
    bw.el("h1", {}, "Account ", bw.el("span", { class: "addr", text: ADDRESS })),
    bw.el("div", { class: "card" }, bw.el("div", { class: "stats" },
      stat("available", bw.sat(account.available), "available"),
      stat("blocked in bids and trades", bw.sat(account.blocked), "blocked"),
      stat("total", bw.sat(account.available + account.blocked)),
      stat("last nonce", String(account.last_nonce)))),
    reputationCard(account),
    bw.el("div", { class: "card" }, bw.el("h2", { text: "Recent bids" }), bidsTable(bids)),
    bw.el("div", { class: "card" }, bw.el("h2", { text: "Ledger" }), bw.el("div", { id: "ledger" })));
  renderLedger(ledger);
}

const refresh = bw.debounce(load, 150);
// The public stream (an address's own stream needs its key's token): refresh when this
// account changed, one of its transactions moved, or the book changed (its bids).
function concerns(kind, data) {
  if (kind === "account") return data.address === ADDRESS;
  if (kind === "transaction") return data.buyer === ADDRESS || data.seller === ADDRESS;
  return kind === "book";
}
document.title = "BitWrk · account " + bw.short(ADDRESS);
bw.header();
bw.live("/api/v1/events", ["account", "transaction", "book"],
        (kind, data) => { if (concerns(kind, data)) refresh(); }, refresh);
