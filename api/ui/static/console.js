"use strict";
// The review console: keys, queue, detail, dialogs and live updates.
// What it shows comes from the server as HTML (/ui/queue, /ui/cases/{id}); review
// actions go to the JSON API (/api/v1/cases/{id}/...). Keys are in KEYS below and
// in the help overlay (tpl-help in console.html): keep the two in step.
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
  const queueEl = $("#queue"), detailEl = $("#detail"), filters = $("#filters");
  const overlay = $("#overlay"), dialogEl = $(".dialog", overlay);
  const REASONS = $$("li", $("#tpl-reject").content).map(li => li.dataset.reason);

  let selectedId = null;  // the case in the detail pane
  let dialog = null;      // the open dialog: {keydown(e) -> true when it used the key}
  const known = new Set(ids());  // cases already shown, so new arrivals can be marked

  function ids() { return $$("#items .item").map(li => +li.dataset.id); }
  function items() { return $$("#items .item"); }
  function params() { return new URLSearchParams(new FormData(filters)); }

  function toast(message, kind = "") {
    const t = document.createElement("div");
    t.className = "toast " + kind;
    t.textContent = message;
    $("#toasts").append(t);
    setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
  }

  async function fetchOk(url, options) {
    const r = await fetch(url, options);
    if (r.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("not logged in");
    }
    if (!r.ok) {
      let detail = null;
      try { detail = (await r.json()).detail; } catch (_) { /* not JSON */ }
      if (Array.isArray(detail)) detail = detail.map(d => d.msg).join("; ");
      throw new Error(detail || `${r.status} ${r.statusText}`);
    }
    return r;
  }

  // ---------------------------------------------------------------- queue and detail

  async function loadQueue({keep = selectedId, index = 0, passOver = null, reloadDetail = false} = {}) {
    const r = await fetchOk("/ui/queue?" + params());
    queueEl.innerHTML = await r.text();
    const now = ids();
    let added = 0;
    items().forEach(li => {
      if (!known.has(+li.dataset.id)) { li.classList.add("fresh"); known.add(+li.dataset.id); added++; }
    });
    let i = now.indexOf(keep);
    if (i < 0) {
      i = Math.min(index, now.length - 1);
      if (passOver !== null && now[i] === passOver) i = Math.min(i + 1, now.length - 1);  // just reviewed: go on
    }
    if (i >= 0) await select(i, {reload: reloadDetail});
    else { selectedId = null; detailEl.innerHTML = '<p class="empty">没有案件 No cases match the filters.</p>'; }
    return added;
  }

  async function select(i, {reload = false} = {}) {
    const list = items();
    if (!list.length) return;
    i = Math.max(0, Math.min(i, list.length - 1));
    list.forEach(li => li.classList.toggle("selected", li === list[i]));
    list[i].scrollIntoView({block: "nearest"});
    const id = +list[i].dataset.id;
    if (id !== selectedId || reload) {
      selectedId = id;
      await loadDetail();
    }
  }

  async function loadDetail() {
    const id = selectedId;
    try {
      const html = await (await fetchOk(`/ui/cases/${id}`)).text();
      if (id !== selectedId) return;  // the analyst has moved on meanwhile
      detailEl.innerHTML = html;
      detailEl.scrollTop = 0;
      const map = $("#gridmap", detailEl);
      if (map) map.addEventListener("click", e => openLocation(mapPoint(map, e)));
    } catch (err) {
      toast(err.message, "error");
    }
  }

  function position() { return items().findIndex(li => +li.dataset.id === selectedId); }
  const next = () => select(position() + 1);
  const prev = () => select(Math.max(0, position() - 1));

  function current() {
    const c = $("#case");
    if (!c) return null;
    const num = v => (v === "" ? null : +v);
    return {id: +c.dataset.id, caseNo: c.dataset.caseNo, status: c.dataset.status, eventType: c.dataset.eventType,
            lat: num(c.dataset.lat), lon: num(c.dataset.lon), grid: c.dataset.grid};
  }

  function draft() {
    const c = current();
    if (!c) { toast("先选择案件 Select a case first", "error"); return null; }
    if (c.status !== "draft") { toast(`${c.caseNo} is already ${c.status}: only a draft can be reviewed`, "error"); return null; }
    return c;
  }

  async function act(c, verb, body, done) {
    try {
      await fetchOk(`/api/v1/cases/${c.id}/${verb}`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                      body: JSON.stringify(body)});
    } catch (err) {
      toast(`${c.caseNo}: ${err.message}`, "error");
      return;
    }
    toast(done);
    const decided = verb === "approve" || verb === "reject";
    const i = items().findIndex(li => +li.dataset.id === c.id);
    await loadQueue(decided ? {keep: null, index: Math.max(i, 0), passOver: c.id, reloadDetail: true}
                            : {keep: c.id, index: Math.max(i, 0), reloadDetail: true});
  }

  // ---------------------------------------------------------------- dialogs

  function openDialog(title, template, setup, wide = false) {
    dialogEl.classList.toggle("wide", wide);
    $("#dialog-title").textContent = title;
    const body = $("#dialog-body");
    body.replaceChildren($("#" + template).content.cloneNode(true));
    $$(".case-no", body).forEach(el => { el.textContent = current() ? current().caseNo : ""; });
    overlay.hidden = false;
    dialog = (setup && setup(body)) || {keydown: () => false};
  }

  function closeDialog() {
    overlay.hidden = true;
    $("#dialog-body").replaceChildren();
    dialog = null;
  }

  overlay.addEventListener("click", e => { if (e.target === overlay) closeDialog(); });

  // A list of choices moved through with ↑/↓ (and j/k when no text box has the focus).
  function chooser(list, onChoose) {
    const visible = () => $$("li", list).filter(li => !li.hidden && !li.classList.contains("muted"));
    const activate = li => {
      $$("li.active", list).forEach(x => x.classList.remove("active"));
      if (li) { li.classList.add("active"); li.scrollIntoView({block: "nearest"}); }
    };
    const move = step => {
      const v = visible();
      if (!v.length) return;
      const i = v.indexOf($("li.active", list));
      activate(v[Math.max(0, Math.min(v.length - 1, i + step))]);
    };
    list.addEventListener("click", e => { const li = e.target.closest("li"); if (li && !li.classList.contains("muted")) onChoose(li); });
    activate(visible()[0]);
    return {
      activate, visible,
      keydown(e, typing) {
        if (e.key === "ArrowDown" || (!typing && e.key === "j")) { move(1); return true; }
        if (e.key === "ArrowUp" || (!typing && e.key === "k")) { move(-1); return true; }
        if (e.key === "Enter") { const li = $("li.active", list); if (li) onChoose(li); return true; }
        return false;
      },
    };
  }

  // Approve with a 721 handling: the case's hint is chosen first, so a then a (or Enter) keeps it.
  function openApprove() {
    const c = draft();
    if (!c) return;
    openDialog(`确认 Approve ${c.caseNo}`, "tpl-approve", body => {
      const list = $("#handlings", body), hint = $("#case").dataset.hint;
      const reason = $("#handling .reason");
      $(".reason", body).textContent = reason ? reason.textContent : "";
      const approve = li => {
        closeDialog();
        act(c, "approve", {handling: li.dataset.handling},
            `${c.caseNo} 已确认 approved · ${li.textContent.replace(/^\d\s*/, "").split(" · ")[0]}`);
      };
      const pick = chooser(list, approve);
      const suggested = $(`li[data-handling="${hint}"]`, list);
      if (suggested) { $(".suggested", suggested).hidden = false; pick.activate(suggested); }
      const choices = $$("li", list);
      return {
        keydown(e) {
          const n = Number(e.key);
          if (Number.isInteger(n) && n >= 1 && n <= choices.length) { approve(choices[n - 1]); return true; }
          if (e.key === "a") return pick.keydown({key: "Enter"});
          return pick.keydown(e, false);
        },
      };
    });
  }

  function openReject() {
    const c = draft();
    if (!c) return;
    openDialog(`驳回 Reject ${c.caseNo}`, "tpl-reject", body => {
      const note = $("#reject-note", body);
      let other = false;
      const choose = reason => {
        if (reason === "other") { other = true; $(".note", body).hidden = false; note.focus(); return; }
        closeDialog();
        act(c, "reject", {reason}, `${c.caseNo} 已驳回 rejected: ${reason.replace("_", " ")}`);
      };
      $("#reasons", body).addEventListener("click", e => { const li = e.target.closest("li"); if (li) choose(li.dataset.reason); });
      return {
        keydown(e) {
          if (other && e.key === "Enter") {
            if (!note.value.trim()) { toast("“Other” needs a note saying why", "error"); return true; }
            closeDialog();
            act(c, "reject", {reason: "other", note: note.value.trim()}, `${c.caseNo} 已驳回 rejected: other`);
            return true;
          }
          if (document.activeElement === note) return false;  // typing the note
          const n = Number(e.key);
          if (Number.isInteger(n) && n >= 1 && n <= REASONS.length) { choose(REASONS[n - 1]); return true; }
          return false;
        },
      };
    });
  }

  function openReclassify() {
    const c = draft();
    if (!c) return;
    openDialog(`改类 Reclassify ${c.caseNo}`, "tpl-reclassify", body => {
      const input = $("#choice-filter", body), list = $("#classes", body);
      $$("li[data-event-type]", list).forEach(li => { li.hidden = li.dataset.eventType === c.eventType; });
      const fixed = new Set($$("li[hidden]", list));
      const pick = chooser(list, li => {
        closeDialog();
        const body = li.dataset.eventType ? {event_type: li.dataset.eventType}
                                          : {major: li.dataset.major, minor: li.dataset.minor};
        act(c, "reclassify", body, `${c.caseNo} 已改类 reclassified: ${li.textContent.trim()}`);
      });
      input.addEventListener("input", () => {
        const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
        $$("li", list).forEach(li => {
          li.hidden = fixed.has(li) || !words.every(w => li.dataset.text.toLowerCase().includes(w));
        });
        pick.activate(pick.visible()[0]);
      });
      input.focus();
      return {keydown: e => pick.keydown(e, true)};
    });
  }

  function openMerge() {
    const c = draft();
    if (!c) return;
    openDialog(`合并 Merge into ${c.caseNo}`, "tpl-merge", body => {
      const list = $("#merge-list", body);
      let pick = null;
      (async () => {
        try {
          const r = await fetchOk("/api/v1/cases?status=draft&limit=200");
          const others = (await r.json()).items.filter(o => o.id !== c.id);
          const far = o => (c.lat === null || o.lat === null ? Infinity : metres(c.lat, c.lon, o.lat, o.lon));
          others.sort((x, y) => (x.event_type !== c.eventType) - (y.event_type !== c.eventType) || far(x) - far(y));
          list.replaceChildren(...others.map((o, i) => {
            const li = document.createElement("li");
            li.dataset.id = o.id;
            const d = far(o);
            li.innerHTML = `${i < 9 ? `<kbd>${i + 1}</kbd> ` : ""}<b></b> · <span class="type t-${o.event_type}"></span>` +
                           ` · <span class="src"></span>${d < Infinity ? ` · ${d < 1000 ? Math.round(d) + " m" : (d / 1000).toFixed(1) + " km"} away` : ""}`;
            $("b", li).textContent = o.case_no;
            $(".type", li).textContent = o.event_type.replace("_", " ");
            $(".src", li).textContent = o.source_ids.join(", ");
            return li;
          }));
          if (!others.length) list.innerHTML = '<li class="muted">no other draft to merge</li>';
          pick = chooser(list, li => {
            closeDialog();
            act(c, "merge", {other_id: +li.dataset.id}, `${$("b", li).textContent} merged into ${c.caseNo}`);
          });
        } catch (err) {
          list.innerHTML = "";
          toast(err.message, "error");
        }
      })();
      return {
        keydown(e) {
          if (!pick) return false;
          const n = Number(e.key);
          const v = pick.visible();
          if (Number.isInteger(n) && n >= 1 && n <= Math.min(9, v.length)) { pick.activate(v[n - 1]); return pick.keydown({key: "Enter"}); }
          return pick.keydown(e, false);
        },
      };
    });
  }

  function metres(lat1, lon1, lat2, lon2) {
    const rad = Math.PI / 180, a = Math.sin((lat2 - lat1) * rad / 2) ** 2 +
      Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin((lon2 - lon1) * rad / 2) ** 2;
    return 2 * 6371000 * Math.asin(Math.sqrt(a));
  }

  // SVG map: the element's data-* say how its metres relate to degrees (api/gridmap.py).
  function mapPoint(svg, e) {
    const p = svg.createSVGPoint();
    p.x = e.clientX; p.y = e.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    const d = svg.dataset;
    return {lat: +d.lat0 - q.y / +d.ky, lon: +d.lon0 + q.x / +d.kx};
  }

  function showProposed(svg, point) {
    const d = svg.dataset, dot = $(".proposed", svg);
    dot.setAttribute("cx", (point.lon - d.lon0) * d.kx);
    dot.setAttribute("cy", -(point.lat - d.lat0) * d.ky);
    dot.setAttribute("visibility", "visible");
  }

  function openLocation(point = null) {
    const c = draft();
    if (!c) return;
    openDialog(`位置 Location of ${c.caseNo}`, "tpl-location", body => {
      const lat = $("#loc-lat", body), lon = $("#loc-lon", body), cell = $("#loc-grid", body);
      const source = $("#gridmap");
      let map = null;
      if (source) {
        map = source.cloneNode(true);
        map.id = "gridmap-edit";
        body.insertBefore(map, $(".hint", body));
        map.addEventListener("click", e => { set(mapPoint(map, e)); });
      }
      let timer = null;
      const preview = () => {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          const la = parseFloat(lat.value), lo = parseFloat(lon.value);
          if (!Number.isFinite(la) || !Number.isFinite(lo)) { cell.textContent = "—"; return; }
          if (map) showProposed(map, {lat: la, lon: lo});
          try {
            const g = await (await fetchOk(`/api/v1/grid/at?lat=${la}&lon=${lo}`)).json();
            cell.textContent = g.grid || "outside the city's grid";
          } catch (err) { cell.textContent = err.message; }
        }, 150);
      };
      const set = p => { lat.value = p.lat.toFixed(6); lon.value = p.lon.toFixed(6); preview(); };
      [lat, lon].forEach(el => el.addEventListener("input", preview));
      if (point) set(point);
      else if (c.lat !== null) { lat.value = c.lat.toFixed(6); lon.value = c.lon.toFixed(6); cell.textContent = c.grid || "—"; }
      lat.focus();
      lat.select();
      return {
        keydown(e) {
          if (e.key !== "Enter") return false;
          const la = parseFloat(lat.value), lo = parseFloat(lon.value);
          if (!Number.isFinite(la) || !Number.isFinite(lo)) { toast("Type a latitude and a longitude", "error"); return true; }
          closeDialog();
          act(c, "location", {lat: la, lon: lo}, `${c.caseNo} moved to ${la.toFixed(6)}, ${lo.toFixed(6)}`);
          return true;
        },
      };
    }, true);
  }

  // The evidence viewer's keys mean the same kind every time: 1 snapshot, 2 before, 3 after,
  // 4 clip. A kind a case lacks keeps its key and says that it is missing.
  const VIEWS = ["snapshot", "before", "after", "clip"];

  function openEvidence() {
    const c = current();
    if (!c) return;
    const views = VIEWS.map(name => {
      const f = $(`#case figure[data-view=${name}]`);
      const m = f && $("img, video", f);
      return {name, src: m ? m.getAttribute("src") : null, video: !!m && m.tagName === "VIDEO",
              caption: f ? $("figcaption", f).textContent : name,
              missing: m ? null : (f && $(".missing", f) ? $(".missing", f).textContent : `no ${name}`)};
    });
    if (views.every(v => v.missing)) { toast("this case has no evidence pictures", "error"); return; }
    openDialog(`证据 Evidence of ${c.caseNo}`, "tpl-evidence", body => {
      const viewer = $("#viewer", body);
      let at = 0;
      const show = i => {
        at = (i + views.length) % views.length;
        const v = views[at];
        viewer.innerHTML = '<div class="tabs"></div>';
        views.forEach((x, j) => {
          const tab = document.createElement("span");
          tab.textContent = `${j + 1} ${x.name}`;
          tab.className = (j === at ? "on" : "") + (x.missing ? " absent" : "");
          if (x.missing) tab.title = x.missing;
          $(".tabs", viewer).append(tab);
        });
        let m;
        if (v.missing) {
          m = document.createElement("div");
          m.className = "missing";
          m.textContent = `${v.missing} (没有 missing)`;
        } else {
          m = document.createElement(v.video ? "video" : "img");
          m.src = v.src;
          if (v.video) { m.controls = m.muted = m.loop = m.autoplay = true; m.playsInline = true; }
        }
        const cap = document.createElement("p");
        cap.className = "hint";
        cap.textContent = v.caption;
        viewer.append(m, cap);
      };
      show(views.findIndex(v => !v.missing));
      return {
        keydown(e) {
          if (e.key === "ArrowRight" || e.key === "l" || e.key === "e") { show(at + 1); return true; }
          if (e.key === "ArrowLeft" || e.key === "h") { show(at - 1); return true; }
          const n = Number(e.key);
          if (Number.isInteger(n) && n >= 1 && n <= views.length) { show(n - 1); return true; }
          if (e.key === " ") { const v = $("video", viewer); if (v) (v.paused ? v.play() : v.pause()); return true; }
          return false;
        },
      };
    }, true);
  }

  function toggleClip() {
    const v = $("#case video");
    if (v) (v.paused ? v.play() : v.pause());
  }

  function toggleSort() {
    const order = filters.elements.order;
    order.value = order.value === "newest" ? "confidence" : "newest";
    filtersChanged();
  }

  const openHelp = () => openDialog("快捷键 Keyboard — everything has a key", "tpl-help");

  // ---------------------------------------------------------------- keys

  const KEYS = {
    j: next, ArrowDown: next, k: prev, ArrowUp: prev,
    a: openApprove,
    r: openReject, c: openReclassify, m: openMerge, l: () => openLocation(), e: openEvidence,
    v: toggleClip, s: toggleSort, f: () => filters.elements.status.focus(), "?": openHelp,
  };

  document.addEventListener("keydown", e => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (dialog) {
      if (e.key === "Escape") { closeDialog(); e.preventDefault(); return; }
      if (dialog.keydown(e)) e.preventDefault();
      return;
    }
    if (e.target.matches("input, select, textarea")) {  // filling in the filters
      if (e.key === "Escape") { e.target.blur(); e.preventDefault(); }
      return;
    }
    const handler = KEYS[e.key];
    if (handler) { e.preventDefault(); handler(); }
  });

  $("#help-button").addEventListener("click", openHelp);
  queueEl.addEventListener("click", e => {
    const li = e.target.closest(".item");
    if (li) select(items().indexOf(li));
  });

  // ---------------------------------------------------------------- filters and live updates

  function filtersChanged() {
    history.replaceState(null, "", "/?" + params());
    loadQueue({keep: selectedId}).catch(err => toast(err.message, "error"));
  }
  filters.addEventListener("change", filtersChanged);
  filters.addEventListener("submit", e => { e.preventDefault(); filtersChanged(); });

  let refreshTimer = null;
  function changed(cases) {
    if (refreshTimer) return;  // one refresh for a burst of changes
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      const mine = cases === null || cases.some(x => x.id === selectedId);
      try {
        const added = await loadQueue({keep: selectedId, reloadDetail: mine && !dialog});
        if (added) toast(`${added} 新案件 new draft${added > 1 ? "s" : ""}`);
      } catch (err) { toast(err.message, "error"); }
    }, 300);
  }

  function live() {
    const badge = $("#live");
    const poll = () => {
      badge.textContent = "○ polling every 5 s";
      badge.classList.remove("on");
      setInterval(() => changed(null), 5000);
    };
    if (!window.EventSource) { poll(); return; }
    const source = new EventSource("/api/v1/cases/stream");
    source.addEventListener("open", () => { badge.textContent = "● live 实时"; badge.classList.add("on"); });
    source.addEventListener("cases", e => changed(JSON.parse(e.data)));
    source.addEventListener("error", () => {
      badge.classList.remove("on");
      if (source.readyState === EventSource.CLOSED) poll();  // refused for good: fall back to polling
      else badge.textContent = "○ reconnecting";
    });
  }

  live();
  if (items().length) select(0);
})();
