// One transaction's full trace: phases with times, every signed message, the money it moved.
"use strict";

const TXID = Number(location.pathname.split("/").pop());
const HAPPY = ["ESTABLISHING", "TRANSMITTING", "WORKING", "UNVERIFIED", "FINISHED"];
const ROLE_TEXT = { buyer: "buyer", seller: "seller", operator: "operator", exchange: "exchange" };

function phaseTimes(tx) {
  const times = { ESTABLISHING: tx.matched };
  for (const m of tx.messages) {
    if (m.post_phase !== m.pre_phase && !(m.post_phase in times)) times[m.post_phase] = m.time;
  }
  return times;
}

function timeline(tx) {
  const times = phaseTimes(tx);
  const path = HAPPY.slice();
  if (!HAPPY.includes(tx.phase)) {
    // Ended off the happy path: show where it left it and how it ended.
    const reached = HAPPY.filter((p) => p in times);
    path.splice(0, path.length, ...reached, tx.phase);
  }
  const steps = path.map((phase) => {
    const at = times[phase];
    const cls = phase === tx.phase
      ? (tx.retired && phase !== "FINISHED" ? "failed" : tx.retired ? "done" : "current")
      : at !== undefined ? "done" : "";
    const since = at !== undefined && phase !== "ESTABLISHING"
      ? ` (+${(at - tx.matched).toFixed(2)} s)` : "";
    return bw.el("div", { class: "step " + cls, "data-phase": phase },
      bw.el("span", { class: "name", text: phase.toLowerCase().replace("_", " ") }),
      bw.el("span", { class: "when", text: at !== undefined ? bw.time(at) + since : "" }));
  });
  return bw.el("div", { class: "timeline", id: "timeline" }, ...steps);
}

function kv(pairs) {
  const dl = bw.el("dl", { class: "kv" });
  for (const [key, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(bw.el("dt", { text: key }), bw.el("dd", {}, value));
  }
  return dl;
}

function fields(documentText) {
  // The canonical document is form-encoded (bitwrk.protocol.canonical_document).
  const pairs = [...new URLSearchParams(documentText)].filter(([k]) => !["action",
    "exchange", "address"].includes(k));
  return kv(pairs.map(([k, v]) => [k, bw.el("span", { class: "mono", text: v })]));
}

function message(m, index) {
  const head = bw.el("div", { class: "head" },
    bw.el("span", { class: "action", text: `${index + 1}. ${m.action}` }),
    bw.el("span", { class: "muted", text: ROLE_TEXT[m.role] || m.role }),
    bw.accountLink(m.sender),
    bw.el("span", { class: "mono", text: bw.time(m.time) }),
    bw.el("span", {}, bw.el("span", { class: "badge " + m.pre_phase, text: m.pre_phase }), " → ",
          bw.el("span", { class: "badge " + m.post_phase, text: m.post_phase })),
    bw.el("span", { class: "muted", text: "revision " + m.revision }));
  const box = bw.el("div", { class: "message", "data-action": m.action }, head);
  if (m.document) {
    box.append(bw.el("div", { class: "fields" }, fields(m.document)),
               bw.el("pre", { class: "document", title: "the signed document, verbatim",
                              text: m.document }),
               bw.el("div", { class: "sig", text: "signature " + m.signature }));
  } else {
    box.append(bw.el("pre", { class: "muted", text: "(the exchange's own step: no signature)" }));
  }
  return box;
}

async function load() {
  let tx, movements;
  try {
    [tx, movements] = await Promise.all([
      bw.json(`/api/v1/transactions/${TXID}`),
      bw.json(`/api/v1/transactions/${TXID}/movements`)]);
  } catch (err) {
    bw.replace("page", bw.el("div", { class: "error", text: String(err.message || err) }));
    return;
  }
  document.title = `BitWrk · transaction #${TXID} · ${tx.phase}`;
  document.body.dataset.phase = tx.phase;
  bw.replace("page",
    bw.el("h1", {}, `Transaction #${TXID}  `,
          bw.el("span", { class: "badge " + tx.phase, id: "phase", text: tx.phase })),
    bw.el("div", { class: "card" }, bw.el("h2", { text: "Phases" }), timeline(tx)),
    bw.el("div", { class: "card" }, bw.el("h2", { text: "Terms" }), kv([
      ["article", bw.el("span", { class: "mono", text: tx.article })],
      ["price", bw.sat(tx.price)], ["fee", bw.sat(tx.fee)],
      ["buyer", bw.accountLink(tx.buyer)], ["seller", bw.accountLink(tx.seller)],
      ["bids", `buy #${tx.buy_bid} · sell #${tx.sell_bid}`],
      ["matched", bw.date(tx.matched)],
      ["deadline", tx.timeout ? bw.date(tx.timeout) : null],
      ["retired", tx.retired ? bw.date(tx.retired) : null],
      ["worker URL", tx.workerurl], ["work hash", tx.workhash && bw.el("span", { class: "mono", text: tx.workhash })],
      ["result hash", tx.encresulthash && bw.el("span", { class: "mono", text: tx.encresulthash })],
      ["reason", tx.reason], ["revision", String(tx.revision)]])),
    bw.el("div", { class: "card", id: "messages" },
      bw.el("h2", { text: `Signed messages (${tx.messages.length})` }),
      tx.messages.length ? bw.el("div", {}, ...tx.messages.map(message))
        : bw.el("p", { class: "empty", text: "none yet: the trade was just matched" })),
    bw.el("div", { class: "card", id: "movements" },
      bw.el("h2", { text: "Ledger movements" }), movementsTable(movements, false)));
}

const refresh = bw.debounce(load);
bw.header();
bw.live("/api/v1/events", ["transaction"], (kind, data) => {
  if (data.id === TXID) refresh();
}, refresh);
