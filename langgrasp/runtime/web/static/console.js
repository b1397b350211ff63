// langgrasp console: drives the pick loop through the JSON API of the server that serves it.
//
// Updates come from the server-sent events of /api/events (read with fetch, so the access token
// can travel in a header; EventSource cannot send headers). Every request carries the token when
// the server has one: open the page as http://host:port/#token=<token> (the fragment never
// leaves the browser; it is kept in sessionStorage and removed from the address bar), or enter
// it when asked. Escape, anywhere on the page, stops the robot.
"use strict";

(() => {
  const TOKEN_KEY = "langgrasp-token";
  const AUDIT_RECORDS = 40;
  const RECONNECT_MS = 1000;
  const REFRESH_DELAY_MS = 30;
  const STOP_TIMEOUT_MS = 2000; // a stop not answered by then is reported as failed
  const ACTIVATE_WARNING =
    "Activate the gripper? Its fingers open and close fully: keep hands and objects out.";
  const $ = (id) => document.getElementById(id);

  let token = null;
  let askingToken = false;
  let shownDetection = -1;
  let liveFps = 0;
  let liveTimer = null;
  let refreshTimer = null;
  let refreshing = false; // one state/audit refresh in flight at a time
  let refreshAgain = false;
  let overlayUrl = null;
  let latestAction = 0; // a late reply must not overwrite a newer one (e.g. confirm after stop)

  // STOP and Escape first: nothing that runs later (token, events, pictures) can take them away.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      stop();
    }
  });
  $("stop").addEventListener("click", stop);

  token = loadToken();

  // -- access token --------------------------------------------------------------------------

  function loadToken() {
    try {
      const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
      if (match) {
        history.replaceState(null, "", location.pathname + location.search);
        sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      }
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (err) {
      // A malformed #token= (or storage that is off): ask for the token when a request needs it.
      showReply(599, { detail: `the token in the address could not be read (${err.message})` });
      return null;
    }
  }

  function askToken(detail) {
    if (askingToken) return false;
    askingToken = true;
    const given = window.prompt(`${detail}\n\nAccess token of this robot's console:`);
    askingToken = false;
    if (!given) return false;
    token = given.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    return true;
  }

  function headers(extra = {}) {
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }

  // -- requests ------------------------------------------------------------------------------

  async function request(method, path, body, retry = true, signal = undefined) {
    const options = { method, headers: headers(), signal };
    if (body !== undefined) {
      options.headers = headers({ "Content-Type": "application/json" });
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if ((response.status === 401 || response.status === 403) && retry) {
      const error = await response.json().catch(() => ({}));
      if (askToken(error.detail || "This server needs an access token.")) {
        return request(method, path, body, false, signal);
      }
    }
    return response;
  }

  async function requestJson(method, path, body, signal = undefined) {
    const response = await request(method, path, body, true, signal);
    let data;
    try {
      data = await response.json();
    } catch (err) {
      data = { error: "bad_response", detail: `${response.status} ${response.statusText}` };
    }
    return { status: response.status, data };
  }

  // -- commands ------------------------------------------------------------------------------

  function showReply(status, data) {
    const reply = $("reply");
    if (status >= 400) {
      reply.className = "reply error";
      reply.textContent = data.detail || data.error || `HTTP ${status}`;
    } else {
      reply.className = data.ok ? "reply ok" : "reply refused";
      reply.textContent = data.message || (data.ok ? "done" : "not done");
    }
  }

  async function act(method, path, body) {
    const mine = ++latestAction;
    try {
      const { status, data } = await requestJson(method, path, body);
      if (mine === latestAction) showReply(status, data);
      scheduleRefresh();
      return status < 400 && data.ok;
    } catch (err) {
      if (mine === latestAction) {
        showReply(599, { detail: `the server cannot be reached (${err.message})` });
      }
      return false;
    }
  }

  async function stop() {
    const mine = ++latestAction;
    const button = $("stop");
    button.classList.add("sent");
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), STOP_TIMEOUT_MS);
    try {
      const { status, data } = await requestJson("POST", "/api/stop", undefined, abort.signal);
      if (status >= 400) throw new Error(data.detail || status);
      if (mine === latestAction) showReply(status, data);
    } catch (err) {
      // A failed stop is always shown, whatever else happened meanwhile.
      const why = abort.signal.aborted ? `no answer within ${STOP_TIMEOUT_MS} ms` : err.message;
      showReply(599, { detail: `STOP FAILED (${why}): use the emergency stop` });
    } finally {
      clearTimeout(timer);
      button.classList.remove("sent");
      scheduleRefresh();
    }
  }

  function sendCommand(text) {
    const trimmed = text.trim();
    if (!trimmed) {
      showReply(200, { ok: false, message: "type what to do, e.g. 'pick the red mug'" });
      return Promise.resolve(false);
    }
    $("reply").className = "reply";
    $("reply").textContent = `> ${trimmed}`;
    return act("POST", "/api/command", { text: trimmed });
  }

  // -- state ---------------------------------------------------------------------------------

  function scheduleRefresh() {
    if (refreshing) {
      refreshAgain = true; // once the one in flight is done
      return;
    }
    if (refreshTimer !== null) return;
    refreshTimer = setTimeout(runRefresh, REFRESH_DELAY_MS);
  }

  async function runRefresh() {
    refreshTimer = null;
    refreshing = true;
    try {
      await Promise.all([refreshState(), refreshAudit()]);
    } finally {
      refreshing = false;
      if (refreshAgain) {
        refreshAgain = false;
        scheduleRefresh();
      }
    }
  }

  async function refreshState() {
    try {
      const { status, data } = await requestJson("GET", "/api/state?refresh=true");
      if (status === 200) renderState(data);
    } catch (err) {
      setConnected(false);
    }
  }

  function renderState(s) {
    const mode = $("mode");
    mode.textContent = s.dry_run ? "DRY RUN" : "EXECUTE";
    mode.className = `badge ${s.dry_run ? "dry" : "execute"}`;
    setLoopState(s.state, s.message);
    const awaiting = s.state === "awaiting_confirm";
    $("confirm").disabled = !awaiting || s.busy;
    $("next").disabled = !awaiting || s.busy;
    $("home").disabled = s.busy || !s.arm.present;
    $("open").disabled = s.busy || !s.gripper.present;
    $("activate").disabled = s.busy || !s.gripper.present;
    // a gripper in reset or fault needs the operator's activation before it can move
    $("activate").classList.toggle("needed", ["reset", "fault"].includes(s.gripper.state));
    renderCandidates(s.candidates || [], s.offered);
    renderDevices(s);
    if (s.web && s.web.live_fps !== liveFps) {
      liveFps = s.web.live_fps;
      $("live").disabled = liveFps <= 0;
    }
    if (s.detection_id !== shownDetection && !$("live").checked) refreshOverlay(s.detection_id);
  }

  function setLoopState(state, message) {
    const badge = $("loop-state");
    badge.textContent = state.replace(/_/g, " ");
    badge.className = `badge state ${state}`;
    $("loop-message").textContent = message || "";
    $("loop-message").title = message || "";
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderCandidates(candidates, offered) {
    const body = $("candidates").querySelector("tbody");
    body.replaceChildren();
    if (!candidates.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      cell(row, "no candidates").colSpan = 6;
      body.appendChild(row);
      return;
    }
    for (const c of candidates) {
      const row = document.createElement("tr");
      row.className = c.rank === offered ? "offered" : c.usable ? "" : "unusable";
      row.dataset.rank = c.rank;
      cell(row, c.rank === offered ? `${c.rank} (offered)` : String(c.rank));
      const q = cell(row, "");
      const bar = document.createElement("span");
      bar.className = "quality";
      const fill = document.createElement("span");
      fill.style.width = `${Math.round(Math.max(0, Math.min(1, c.quality)) * 100)}%`;
      bar.appendChild(fill);
      q.appendChild(bar);
      q.appendChild(document.createTextNode(c.quality.toFixed(2)));
      const p = c.pose;
      cell(row, p ? p.position_m.map((v) => v.toFixed(3)).join(", ") : "-");
      cell(row, p ? `${Math.round((p.yaw_rad * 180) / Math.PI)}°` : "-");
      cell(row, p ? `${Math.round(p.opening_m * 1000)} mm` : "-");
      cell(row, c.usable ? "executable" : c.problem || "not executable");
      body.appendChild(row);
    }
  }

  function describeDevice(entry) {
    if (!entry) return ["unknown", ""];
    if (entry.present === false) return [entry.message || "absent", "absent"];
    let text = entry.state || "unknown";
    if (entry.width_m !== undefined && entry.width_m !== null) {
      text += `, ${(entry.width_m * 1000).toFixed(1)} mm`;
    }
    if (entry.message && entry.message !== entry.state) text += ` (${entry.message})`;
    const bad = entry.lost || entry.state === "fault" || entry.state === "lost";
    return [text, bad ? "bad" : ""];
  }

  function renderDevices(s) {
    const list = $("devices");
    list.replaceChildren();
    const camera = s.camera || {};
    const rows = [
      ["loop", [`${s.state}: ${s.message}`, s.state === "fault" ? "bad" : ""]],
      [
        "camera",
        [
          `${camera.connected ? "connected" : "not connected"}, ${camera.frames} frame(s), ` +
            `${camera.message}`,
          camera.degraded || !camera.connected ? "bad" : "",
        ],
      ],
      ["gripper", describeDevice(s.gripper)],
      ["arm", describeDevice(s.arm)],
    ];
    if (s.detection && s.detection.timings_ms) {
      const t = s.detection.timings_ms;
      const parts = ["capture", "detect", "geometry"]
        .filter((k) => t[k] !== undefined)
        .map((k) => `${k} ${t[k].toFixed(0)} ms`);
      rows.push(["timings", [parts.join(", "), ""]]);
    }
    for (const [name, [text, kind]] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = text;
      dd.id = `device-${name}`;
      if (kind) dd.className = kind;
      list.append(dt, dd);
    }
  }

  // -- audit log -----------------------------------------------------------------------------

  function summarise(r) {
    switch (r.event) {
      case "state":
        return `${r.previous} -> ${r.state}: ${r.message}`;
      case "command":
        return JSON.stringify(r.text);
      case "device_write":
        return `${r.device} @${r.address}: ${JSON.stringify(r.values)}`;
      case "detection":
        return `${r.target}: ${r.grasps} grasp(s)${r.reason ? `, ${r.reason}` : ""}`;
      case "outcome":
        return `${r.outcome}: ${r.message}`;
      case "report":
        return `${r.outcome}: ${r.command}`;
      default: {
        const rest = { ...r };
        for (const key of ["t", "mono_s", "event"]) delete rest[key];
        const text = JSON.stringify(rest);
        return text.length > 160 ? `${text.slice(0, 157)}...` : text;
      }
    }
  }

  async function refreshAudit() {
    try {
      const { status, data } = await requestJson("GET", `/api/audit?n=${AUDIT_RECORDS}`);
      if (status !== 200) return;
      const list = $("audit");
      list.replaceChildren();
      for (const record of data.records.slice().reverse()) {
        const li = document.createElement("li");
        const time = document.createElement("time");
        time.textContent = (record.t || "").slice(11, 23);
        const event = document.createElement("b");
        event.textContent = record.event;
        li.append(time, event, document.createTextNode(summarise(record)));
        li.title = JSON.stringify(record);
        list.appendChild(li);
      }
    } catch (err) {
      /* the event stream reports the connection */
    }
  }

  // -- pictures ------------------------------------------------------------------------------

  async function showImage(path, detectionId) {
    const response = await request("GET", path);
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      $("overlay-note").textContent = error.detail || `no picture (HTTP ${response.status})`;
      return false;
    }
    const url = URL.createObjectURL(await response.blob());
    const img = $("overlay");
    img.src = url;
    if (detectionId !== undefined) img.dataset.detectionId = String(detectionId);
    if (overlayUrl) URL.revokeObjectURL(overlayUrl);
    overlayUrl = url;
    return true;
  }

  async function refreshOverlay(detectionId) {
    shownDetection = detectionId;
    try {
      await showImage(`/api/overlay?format=jpeg&d=${detectionId}`, detectionId);
    } catch (err) {
      shownDetection = -1;
    }
  }

  function setLive(on) {
    if (liveTimer !== null) clearTimeout(liveTimer);
    liveTimer = null;
    if (!on || liveFps <= 0) {
      shownDetection = -1;
      scheduleRefresh();
      return;
    }
    const tick = async () => {
      const started = performance.now();
      try {
        await showImage("/api/live?format=jpeg");
      } catch (err) {
        /* retried on the next tick */
      }
      if ($("live").checked) {
        const wait = Math.max(0, 1000 / liveFps - (performance.now() - started));
        liveTimer = setTimeout(tick, wait);
      }
    };
    tick();
  }

  // -- server-sent events --------------------------------------------------------------------

  function setConnected(on) {
    const conn = $("conn");
    conn.textContent = on ? "live" : "offline";
    conn.className = `badge conn ${on ? "on" : "off"}`;
  }

  function handleEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (event === "state") setLoopState(payload.state, payload.message);
    if (event === "detection" && !$("live").checked) refreshOverlay(payload.detection_id);
    scheduleRefresh();
  }

  async function listen() {
    for (;;) {
      try {
        const response = await request("GET", "/api/events");
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        setConnected(true);
        scheduleRefresh();
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handleEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (err) {
        /* reconnect below */
      }
      setConnected(false);
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  // -- speech --------------------------------------------------------------------------------

  const SPEECH_ERRORS = {
    "not-allowed": "the microphone is blocked; allow it in the browser's site settings",
    "service-not-allowed": "the browser does not allow its speech service here",
    "audio-capture": "no microphone was found",
    network: "the browser's speech service cannot be reached (it runs online)",
    "language-not-supported": "English is not supported by this browser's recogniser",
  };

  function micStatus(text) {
    $("mic-status").textContent = text;
  }

  function listenForSpeech() {
    const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
    if (!Recognition) {
      micStatus("Speech recognition is unavailable in this browser; type the command instead.");
      return;
    }
    if (!window.isSecureContext) {
      micStatus(
        "Speech recognition is unavailable on this address: browsers allow the microphone " +
          "only on https or localhost; type the command instead.",
      );
      return;
    }
    let recognition;
    try {
      recognition = new Recognition();
    } catch (err) {
      micStatus(`Speech recognition is unavailable (${err.message}); type the command instead.`);
      return;
    }
    recognition.lang = "en-US";
    recognition.interimResults = false;
    recognition.maxAlternatives = 1;
    const mic = $("mic");
    recognition.onresult = (event) => {
      const text = event.results[0][0].transcript;
      $("command").value = text;
      micStatus(`heard: "${text}"`);
      sendCommand(text);
    };
    recognition.onerror = (event) => {
      if (event.error === "no-speech" || event.error === "aborted") {
        micStatus("Nothing heard; press Speak and try again.");
        return;
      }
      const why = SPEECH_ERRORS[event.error] || event.error;
      micStatus(`Speech recognition is unavailable here: ${why}. Type the command instead.`);
    };
    recognition.onend = () => mic.classList.remove("listening");
    try {
      recognition.start();
      mic.classList.add("listening");
      micStatus("Listening... say e.g. 'pick the red mug'.");
    } catch (err) {
      micStatus(`Speech recognition is unavailable (${err.message}); type the command instead.`);
    }
  }

  // -- wiring --------------------------------------------------------------------------------

  $("command-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendCommand($("command").value);
  });
  $("confirm").addEventListener("click", () => act("POST", "/api/confirm"));
  $("next").addEventListener("click", () => act("POST", "/api/next"));
  $("home").addEventListener("click", () => act("POST", "/api/home"));
  $("open").addEventListener("click", () => act("POST", "/api/open"));
  $("activate").addEventListener("click", () => {
    if (window.confirm(ACTIVATE_WARNING)) act("POST", "/api/activate");
  });
  $("mic").addEventListener("click", listenForSpeech);
  $("live").addEventListener("change", (event) => setLive(event.target.checked));

  runRefresh();
  listen();
})();
