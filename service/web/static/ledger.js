// Ledger movements as a table (the transaction and account pages).
"use strict";

function delta(value) {
  return bw.el("span", { class: "delta " + (value > 0 ? "pos" : value < 0 ? "neg" : ""),
                         text: value ? bw.signed(value) : "–" });
}

function side(account, value) {
  if (!account && !value) return bw.el("td", { class: "muted", text: "–" });
  return bw.el("td", {}, bw.accountLink(account), " ", delta(value));
}

function movementsTable(rows, showTx) {
  if (rows.length === 0) return bw.el("p", { class: "empty", text: "no money moved yet" });
  const body = rows.map((m) => bw.el("tr", { "data-kind": m.kind },
    bw.el("td", { class: "mono", text: bw.time(m.time) }),
    bw.el("td", { text: m.kind }),
    showTx ? bw.el("td", {}, m.txid ? bw.txLink(m.txid) : m.deposit_uid || (m.bid_id ? "bid " + m.bid_id : "")) : null,
    side(m.available_account, m.available_delta), side(m.blocked_account, m.blocked_delta),
    bw.el("td", { class: "num" }, delta(m.fee_delta)),
    bw.el("td", { class: "num" }, delta(m.world_delta))));
  return bw.el("table", { class: "movements" },
    bw.el("thead", {}, bw.el("tr", {}, bw.el("th", { text: "time" }), bw.el("th", { text: "kind" }),
      showTx ? bw.el("th", { text: "for" }) : null,
      bw.el("th", { text: "available" }), bw.el("th", { text: "blocked" }),
      bw.el("th", { class: "num", text: "fee" }), bw.el("th", { class: "num", text: "outside" }))),
    bw.el("tbody", {}, ...body));
}
