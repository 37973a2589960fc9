// Operations console: the live board (server-sent events) and the fleet panel's refresh.
// Plain DOM code, no framework: the pages work without it; this only keeps them current.
"use strict";

const KIND_TEXT = {
  CHECKED_IN: "签到 Checked in",
  REFUSED: "拒绝 Refused",
  ANNULLED: "撤销 Annulled",
  NEEDS_STAFF: "需人工 Needs staff",
  UWB_DELIVERED: "已写入手环 Band written",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function annulForm(feed, e) {
  const form = el("form", "annul");
  form.method = "post";
  form.action = `/batches/${encodeURIComponent(feed.dataset.batch)}/annul`;
  for (const [name, value] of [["csrf", feed.dataset.csrf], ["check_in_id", e.check_in_id]]) {
    const input = el("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.append(input);
  }
  const reason = el("input");
  reason.name = "reason";
  reason.placeholder = "撤销原因 Reason";
  reason.required = true;
  reason.maxLength = 200;
  const button = el("button", "danger", "撤销 ");
  button.append(el("small", "", "Annul"));
  form.append(reason, button);
  return form;
}

function eventItem(feed, e) {
  const li = el("li", `event ${e.kind.toLowerCase()}`);
  li.dataset.event = e.id;
  li.dataset.checkIn = e.check_in_id;
  li.append(el("time", "", e.at), " ", el("span", "kind", KIND_TEXT[e.kind] || e.kind), " ",
            el("span", "kiosk", e.kiosk), " ", el("span", "who", `${e.name} ${e.id_masked}`));
  if (e.room) li.append(" ", el("span", "room", `房间 ${e.room}`));
  if (e.reason_text) li.append(" ", el("span", "reason", e.reason_text));
  if (e.kind === "CHECKED_IN" && !e.annulled && feed.dataset.canAnnul === "1") li.append(annulForm(feed, e));
  return li;
}

function startBoard(feed) {
  const live = document.getElementById("live");
  const url = `/batches/${encodeURIComponent(feed.dataset.batch)}/stream?after=${feed.dataset.after}`;
  const source = new EventSource(url);
  source.onopen = () => { live.className = "tag on"; live.dataset.state = "live"; live.textContent = "实时 live"; };
  source.onerror = () => { live.className = "tag bad"; live.dataset.state = "reconnecting"; live.textContent = "重连中 reconnecting"; };
  source.addEventListener("checkin", (message) => {
    const e = JSON.parse(message.data);
    if (e.kind === "ANNULLED") {
      for (const form of feed.querySelectorAll(`li[data-check-in="${CSS.escape(e.check_in_id)}"] form.annul`)) form.remove();
    }
    feed.prepend(eventItem(feed, e));
    while (feed.children.length > 100) feed.lastElementChild.remove();
  });
  source.addEventListener("counts", (message) => {
    const stats = JSON.parse(message.data);
    const hours = document.querySelector("#per-hour tbody");
    if (hours && stats.per_hour.length) {
      hours.replaceChildren(...stats.per_hour.map(([hour, n]) => {
        const tr = el("tr");
        tr.append(el("td", "", hour), el("td", "n", String(n)));
        return tr;
      }));
    }
    for (const key of ["invited", "arrived", "missing", "annulled", "needs_staff", "rooms_left", "bands_left"]) {
      const node = document.getElementById(`c-${key}`);
      if (node) node.textContent = stats[key];
    }
    const body = document.querySelector("#kiosks tbody");
    if (body) {
      body.replaceChildren(...stats.kiosks.map((k) => {
        const tr = el("tr");
        tr.dataset.kiosk = k.kiosk_id;
        tr.append(el("td", "", k.kiosk_id), el("td", "n", String(k.check_ins)),
                  el("td", "", k.band_stock === null ? "—" : String(k.band_stock)));
        return tr;
      }));
    }
  });
}

function startPanel(panel) {
  const refresh = async () => {
    // Someone is filling in a form in the panel: replacing it now would throw their typing away.
    if (panel.contains(document.activeElement) && document.activeElement !== document.body) return;
    for (const input of panel.querySelectorAll("input:not([type=hidden])")) if (input.value) return;
    try {
      const answer = await fetch(panel.dataset.refresh, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) panel.innerHTML = await answer.text();
    } catch (err) { /* offline for a moment: try again next round */ }
  };
  setInterval(refresh, Number(panel.dataset.every || 2000));
}

// Forms that undo something ask first (a script, not an inline handler: the page's CSP forbids those).
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
}

const feed = document.getElementById("feed");
if (feed) startBoard(feed);
for (const id of ["fleet-panel", "needs-staff-panel", "steps-panel"]) {
  const panel = document.getElementById(id);
  if (panel) startPanel(panel);
}
