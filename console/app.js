// The seintje console: plain JavaScript modules, no framework and nothing fetched but the service's own API. It
// holds no data of its own: the token the user gives it (kept in sessionStorage, gone with the tab) is sent with
// every request, so the service's grants decide what it shows. Every text from the service is written with
// textContent, never as HTML.

const TEXTS = {
  en: {
    skip: "Skip to content",
    feeds: "Feeds",
    subscriptions: "Subscriptions",
    newSubscription: "New subscription",
    language: "Nederlands",
    logout: "Log out",
    loginTitle: "Log in",
    loginHint:
      "Paste a bearer token for this service. It stays in this browser tab only, and every request is made with it.",
    token: "Token",
    login: "Log in",
    badToken: "This token is not accepted: {detail}",
    noAccess: "This token may neither read feeds nor manage subscriptions.",
    unreachable: "The service cannot be reached.",
    name: "Name",
    head: "Head",
    oldest: "Oldest kept",
    retention: "Retention",
    public: "Public",
    perMinute: "Events per minute",
    perMinuteHint: "Measured while this page is open.",
    none: "none",
    yes: "yes",
    no: "no",
    newFeed: "New feed",
    create: "Create",
    events: "Events",
    after: "After sequence",
    type: "Type prefix",
    subject: "Subject",
    show: "Show",
    nextPage: "Next page",
    sequence: "Sequence",
    time: "Time",
    noEvents: "No events here.",
    liveTail: "Live tail",
    startTail: "Start live tail",
    stopTail: "Stop live tail",
    tailWaiting: "Waiting for new events…",
    types: "Event types",
    declared: "Declared",
    count: "Count",
    lastPublished: "Last published",
    schema: "Schema",
    noTypes: "No types yet.",
    feed: "Feed",
    url: "Callback URL",
    status: "Status",
    lag: "Behind head",
    lastAttempt: "Last attempt",
    failingSince: "Failing since",
    noSubscriptions: "No subscriptions.",
    attempts: "Attempts",
    at: "At",
    answer: "Answer",
    duration: "Duration",
    noAttempts: "No attempts yet.",
    reenable: "Re-enable",
    retry: "Retry now",
    test: "Send test ping",
    rotate: "Rotate secret",
    edit: "Save changes",
    remove: "Delete",
    confirmDelete: "Delete this subscription? Pings stop at once.",
    deleted: "The subscription was deleted.",
    secretOnce: "The new secret, shown this once: {secret}",
    publicKeyNow: "The new public key: {publicKey}",
    done: "Done: {what}.",
    attemptResult: "Attempt: {status} in {ms} ms.",
    description: "Description",
    types_: "Type prefixes (comma-separated)",
    signature: "Signature",
    refused: "The callback was refused: {detail}",
    invalid: "The request was not accepted: {detail}",
    created: "Subscription created.",
    acked: "Acknowledged",
    signed: "Signed with",
    problem: "Something went wrong: {detail}",
    notFound: "Nothing here.",
    refresh: "Refresh",
    change: "Change",
    active: "active",
    failing: "failing",
    disabled: "disabled",
  },
  nl: {
    skip: "Naar de inhoud",
    feeds: "Feeds",
    subscriptions: "Abonnementen",
    newSubscription: "Nieuw abonnement",
    language: "English",
    logout: "Uitloggen",
    loginTitle: "Inloggen",
    loginHint:
      "Plak een bearer-token voor deze dienst. Het blijft alleen in dit tabblad en gaat mee met elk verzoek.",
    token: "Token",
    login: "Inloggen",
    badToken: "Dit token wordt niet geaccepteerd: {detail}",
    noAccess: "Met dit token kunt u geen feeds lezen en geen abonnementen beheren.",
    unreachable: "De dienst is niet bereikbaar.",
    name: "Naam",
    head: "Laatste",
    oldest: "Oudste bewaard",
    retention: "Bewaartermijn",
    public: "Openbaar",
    perMinute: "Events per minuut",
    perMinuteHint: "Gemeten zolang deze pagina open is.",
    none: "geen",
    yes: "ja",
    no: "nee",
    newFeed: "Nieuwe feed",
    create: "Aanmaken",
    events: "Events",
    after: "Na volgnummer",
    type: "Type (begin)",
    subject: "Onderwerp",
    show: "Tonen",
    nextPage: "Volgende pagina",
    sequence: "Volgnummer",
    time: "Tijd",
    noEvents: "Hier zijn geen events.",
    liveTail: "Live meekijken",
    startTail: "Start live meekijken",
    stopTail: "Stop live meekijken",
    tailWaiting: "Wacht op nieuwe events…",
    types: "Eventtypes",
    declared: "Vastgelegd",
    count: "Aantal",
    lastPublished: "Laatst gepubliceerd",
    schema: "Schema",
    noTypes: "Nog geen types.",
    feed: "Feed",
    url: "Callback-URL",
    status: "Status",
    lag: "Achter op laatste",
    lastAttempt: "Laatste poging",
    failingSince: "Faalt sinds",
    noSubscriptions: "Geen abonnementen.",
    attempts: "Pogingen",
    at: "Op",
    answer: "Antwoord",
    duration: "Duur",
    noAttempts: "Nog geen pogingen.",
    reenable: "Weer inschakelen",
    retry: "Nu opnieuw proberen",
    test: "Testping sturen",
    rotate: "Nieuw geheim",
    edit: "Wijzigingen opslaan",
    remove: "Verwijderen",
    confirmDelete: "Dit abonnement verwijderen? Er komen dan geen pings meer.",
    deleted: "Het abonnement is verwijderd.",
    secretOnce: "Het nieuwe geheim, eenmalig getoond: {secret}",
    publicKeyNow: "De nieuwe publieke sleutel: {publicKey}",
    done: "Gedaan: {what}.",
    attemptResult: "Poging: {status} in {ms} ms.",
    description: "Omschrijving",
    types_: "Type-begins (kommagescheiden)",
    signature: "Ondertekening",
    refused: "De callback is geweigerd: {detail}",
    invalid: "Het verzoek is niet geaccepteerd: {detail}",
    created: "Abonnement aangemaakt.",
    acked: "Bevestigd",
    signed: "Ondertekend met",
    problem: "Er ging iets mis: {detail}",
    notFound: "Hier is niets.",
    refresh: "Vernieuwen",
    change: "Wijzigen",
    active: "actief",
    failing: "faalt",
    disabled: "uitgeschakeld",
  },
};

let lang = sessionStorage.getItem("seintje.lang") ?? (document.documentElement.lang === "nl" ? "nl" : "en");

function t(key, values = {}) {
  return TEXTS[lang][key].replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** An element with attributes and children (strings become text nodes, never HTML). */
function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

// ---- the API, with the user's token ----

const token = () => sessionStorage.getItem("seintje.token");

class Problem extends Error {
  constructor(status, document) {
    super(document?.detail ?? `HTTP ${status}`);
    this.status = status;
    this.document = document ?? {};
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed = text === "" ? undefined : JSON.parse(text);
  if (!response.ok) throw new Problem(response.status, parsed);
  return parsed;
}

/** The grants in the token's scope claim, for what the console offers (the service decides what is allowed). */
function grants() {
  try {
    const payload = JSON.parse(atob(token().split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return String(payload.scope ?? "")
      .split(" ")
      .filter(Boolean);
  } catch {
    return [];
  }
}

const isAdmin = (feed) =>
  grants().some((grant) => {
    const [action, glob] = grant.split(":");
    if (action !== "admin") return false;
    if (glob === undefined || feed === undefined) return glob === undefined;
    return new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`).test(feed);
  });

// ---- shared pieces ----

const main = () => document.getElementById("main");

function notice(text, kind = "info") {
  return h(
    "p",
    { class: `notice ${kind === "error" ? "error" : ""}`, role: kind === "error" ? "alert" : "status" },
    text,
  );
}

function describeProblem(error) {
  if (!(error instanceof Problem)) return t("unreachable");
  const said = error.document.detail ?? error.message;
  // The pointed errors, where they say more than the detail.
  const pointed = (error.document.errors ?? [])
    .filter((e) => !said.includes(e.detail))
    .map((e) => `${e.pointer}: ${e.detail}`);
  const detail = [said, ...pointed].filter(Boolean).join(" — ");
  if (error.document.type === "urn:seintje:problem:callback-refused") return t("refused", { detail });
  if (error.status === 400 || error.status === 409) return t("invalid", { detail });
  return t("problem", { detail });
}

function table(caption, headings, rows, empty) {
  if (rows.length === 0) return h("p", {}, empty);
  return h(
    "div",
    { class: "table" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headings.map((heading) => h("th", { scope: "col" }, heading)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

const when = (iso) => (iso ? new Date(iso).toLocaleString(lang === "nl" ? "nl-NL" : "en-GB") : "—");

function render(title, ...content) {
  const target = main();
  target.replaceChildren(
    h("h1", {}, title),
    ...content.filter((part) => part !== null && part !== undefined),
  );
  document.title = `${title} — seintje`;
  target.focus();
}

// ---- views ----

/** Heads seen per feed, to measure events per minute while the page is open. */
const samples = new Map();

function perMinute(feed) {
  const now = Date.now();
  const head = Number(feed.head);
  const seen = samples.get(feed.name);
  if (!seen) {
    samples.set(feed.name, { head, at: now });
    return "—";
  }
  const minutes = (now - seen.at) / 60_000;
  return minutes > 0 ? (Math.max(0, head - seen.head) / minutes).toFixed(1) : "—";
}

async function feedsView() {
  let feeds = [];
  try {
    feeds = (await api("GET", "/v1/feeds")).feeds;
  } catch (error) {
    if (!(error instanceof Problem && error.status === 403)) throw error;
  }
  const rows = feeds.map((feed) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/feeds/${encodeURIComponent(feed.name)}` }, feed.name)),
      h("td", { class: "num" }, feed.head),
      h("td", { class: "num" }, feed.oldest ?? "—"),
      h(
        "td",
        {},
        [feed.retention.maxAge, feed.retention.maxEvents && `${feed.retention.maxEvents}`]
          .filter(Boolean)
          .join(", ") || t("none"),
      ),
      h("td", {}, feed.public ? t("yes") : t("no")),
      h("td", { class: "num" }, perMinute(feed)),
    ),
  );
  const create = isAdmin()
    ? h(
        "form",
        {
          onsubmit: async (event) => {
            event.preventDefault();
            const name = event.target.elements.name.value.trim();
            try {
              await api("PUT", `/v1/feeds/${encodeURIComponent(name)}`, {});
              location.hash = `#/feeds/${encodeURIComponent(name)}`;
            } catch (error) {
              event.target.append(notice(describeProblem(error), "error"));
            }
          },
        },
        h("h2", {}, t("newFeed")),
        h("label", { for: "new-feed" }, t("name")),
        h("input", {
          id: "new-feed",
          name: "name",
          required: true,
          pattern: "[a-z0-9][a-z0-9._\\-]{0,62}",
          autocomplete: "off",
        }),
        h("div", { class: "actions" }, h("button", { type: "submit" }, t("create"))),
      )
    : null;
  render(
    t("feeds"),
    table(
      t("perMinuteHint"),
      [t("name"), t("head"), t("oldest"), t("retention"), t("public"), t("perMinute")],
      rows,
      t("noEvents"),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => route() }, t("refresh")),
    ),
    create,
  );
}

let tail; // the open EventSource of the live tail, if any

function stopTail() {
  tail?.close();
  tail = undefined;
}

async function feedView(name, query) {
  const feed = await api("GET", `/v1/feeds/${encodeURIComponent(name)}`);
  const after = query.get("after") ?? "0";
  const type = query.get("type") ?? "";
  const subject = query.get("subject") ?? "";
  const params = new URLSearchParams({ after, limit: "50" });
  if (type) params.set("type", type);
  if (subject) params.set("subject", subject);
  const [page, types] = await Promise.all([
    api("GET", `/v1/feeds/${encodeURIComponent(name)}/events?${params}`),
    api("GET", `/v1/feeds/${encodeURIComponent(name)}/types`).then((body) => body.types),
  ]);
  const eventRows = page.events.map((event) =>
    h(
      "tr",
      {},
      h("td", { class: "num" }, event.sequence),
      h("td", {}, event.type),
      h("td", {}, event.subject ?? "—"),
      h("td", {}, when(event.time)),
      h("td", {}, h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(event, null, 2)))),
    ),
  );
  const filters = h(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        const form = event.target.elements;
        const next = new URLSearchParams({ after: form.after.value || "0" });
        if (form.type.value) next.set("type", form.type.value);
        if (form.subject.value) next.set("subject", form.subject.value);
        location.hash = `#/feeds/${encodeURIComponent(name)}?${next}`;
      },
    },
    h("label", { for: "after" }, t("after")),
    h("input", { id: "after", name: "after", inputmode: "numeric", value: after }),
    h("label", { for: "type" }, t("type")),
    h("input", { id: "type", name: "type", value: type }),
    h("label", { for: "subject" }, t("subject")),
    h("input", { id: "subject", name: "subject", value: subject }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t("show"))),
  );
  const nextPage =
    page.next !== page.head || page.events.length > 0
      ? h(
          "a",
          {
            href: `#/feeds/${encodeURIComponent(name)}?${new URLSearchParams({ ...Object.fromEntries(params), after: page.next })}`,
          },
          t("nextPage"),
        )
      : null;
  const tailList = h("ul", { class: "tail", id: "tail", "aria-live": "polite", "aria-label": t("liveTail") });
  const tailButton = h("button", { type: "button", id: "tail-toggle" }, t("startTail"));
  tailButton.addEventListener("click", async () => {
    if (tail) {
      stopTail();
      tailButton.textContent = t("startTail");
      return;
    }
    // From the head as it is now: the tail shows what is appended from here on.
    const { head } = await api("GET", `/v1/feeds/${encodeURIComponent(name)}`);
    tailList.replaceChildren(h("li", { class: "waiting" }, t("tailWaiting")));
    const url = `/v1/feeds/${encodeURIComponent(name)}/events?${new URLSearchParams({ after: head, access_token: token() })}`;
    tail = new EventSource(url);
    tail.onmessage = (message) => {
      if (!message.data) return;
      const event = JSON.parse(message.data);
      tailList.querySelector(".waiting")?.remove();
      tailList.prepend(h("li", {}, `${event.sequence} ${event.type} ${event.subject ?? ""} ${event.id}`));
    };
    tailButton.textContent = t("stopTail");
  });
  const typeRows = types.map((entry) =>
    h(
      "tr",
      {},
      h("td", {}, entry.type),
      h("td", {}, entry.declared ? (entry.deprecated ? `${t("yes")} (deprecated)` : t("yes")) : t("no")),
      h("td", { class: "num" }, entry.count),
      h("td", {}, when(entry.lastPublished)),
      h(
        "td",
        {},
        entry.schema === null
          ? "—"
          : h(
              "details",
              {},
              h("summary", {}, t("schema")),
              h("pre", {}, JSON.stringify(entry.schema, null, 2)),
            ),
      ),
    ),
  );
  render(
    feed.name,
    h("p", {}, feed.description ?? ""),
    h(
      "p",
      {},
      `${t("head")}: ${feed.head} · ${t("oldest")}: ${feed.oldest ?? "—"} · ${t("public")}: ${feed.public ? t("yes") : t("no")}`,
    ),
    h("h2", {}, t("liveTail")),
    h("div", { class: "actions" }, tailButton),
    tailList,
    h("h2", {}, t("events")),
    filters,
    table(
      `${t("events")} ${after}…${page.next}`,
      [t("sequence"), "Type", t("subject"), t("time"), "JSON"],
      eventRows,
      t("noEvents"),
    ),
    nextPage,
    h("h2", {}, t("types")),
    table(
      t("types"),
      ["Type", t("declared"), t("count"), t("lastPublished"), t("schema")],
      typeRows,
      t("noTypes"),
    ),
  );
}

const ORDER = { failing: 0, disabled: 1, active: 2 };

async function subscriptionsView() {
  const all = [];
  let page = await api("GET", "/v1/subscriptions?limit=1000");
  for (let round = 0; round < 50; round += 1) {
    all.push(...page.subscriptions);
    if (!page.next) break;
    page = await api("GET", new URL(page.next).pathname + new URL(page.next).search);
  }
  all.sort(
    (a, b) =>
      ORDER[a.status] - ORDER[b.status] ||
      Number(b.head) - Number(b.acked) - (Number(a.head) - Number(a.acked)),
  );
  const rows = all.map((subscription) =>
    h(
      "tr",
      { "data-id": subscription.id },
      h("td", {}, h("a", { href: `#/subscriptions/${subscription.id}` }, subscription.feed)),
      h("td", { class: "url" }, subscription.url),
      h("td", { class: `status-${subscription.status}` }, t(subscription.status)),
      h("td", { class: "num" }, String(Number(subscription.head) - Number(subscription.acked))),
      h(
        "td",
        {},
        subscription.lastAttempt
          ? `${subscription.lastAttempt.statusCode ?? subscription.lastAttempt.error} · ${when(subscription.lastAttempt.at)}`
          : "—",
      ),
      h("td", {}, when(subscription.failingSince)),
    ),
  );
  render(
    t("subscriptions"),
    h("p", {}, h("a", { href: "#/subscriptions/new" }, t("newSubscription"))),
    table(
      t("subscriptions"),
      [t("feed"), t("url"), t("status"), t("lag"), t("lastAttempt"), t("failingSince")],
      rows,
      t("noSubscriptions"),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => route() }, t("refresh")),
    ),
  );
}

async function subscriptionView(id) {
  const [subscription, attempts] = await Promise.all([
    api("GET", `/v1/subscriptions/${id}`),
    api("GET", `/v1/subscriptions/${id}/attempts?limit=20`).then((body) => body.attempts),
  ]);
  const output = h("div", { id: "output" });
  const act = (label, run) =>
    h(
      "button",
      {
        type: "button",
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            output.replaceChildren(notice(await run()));
            await subscriptionView(id).then(() =>
              document.getElementById("output")?.replaceChildren(...output.childNodes),
            );
          } catch (error) {
            output.replaceChildren(notice(describeProblem(error), "error"));
            event.target.disabled = false;
          }
        },
      },
      label,
    );
  const attemptText = (attempt) =>
    t("attemptResult", { status: attempt.statusCode ?? attempt.error, ms: attempt.durationMs });
  const actions = h(
    "div",
    { class: "actions" },
    subscription.status !== "active"
      ? act(t("reenable"), async () => {
          await api("PATCH", `/v1/subscriptions/${id}`, { status: "active" });
          return t("done", { what: t("reenable") });
        })
      : null,
    act(t("retry"), async () => attemptText(await api("POST", `/v1/subscriptions/${id}/retry`))),
    act(t("test"), async () => attemptText(await api("POST", `/v1/subscriptions/${id}/test`))),
    act(t("rotate"), async () => {
      const rotated = await api("POST", `/v1/subscriptions/${id}/rotate-secret`);
      return rotated.secret
        ? t("secretOnce", { secret: rotated.secret })
        : t("publicKeyNow", { publicKey: rotated.publicKey });
    }),
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: async () => {
          if (!confirm(t("confirmDelete"))) return;
          try {
            await api("DELETE", `/v1/subscriptions/${id}`);
            location.hash = "#/subscriptions";
          } catch (error) {
            output.replaceChildren(notice(describeProblem(error), "error"));
          }
        },
      },
      t("remove"),
    ),
  );
  const edit = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const form = event.target.elements;
        try {
          await api("PATCH", `/v1/subscriptions/${id}`, {
            url: form.url.value,
            description: form.description.value || null,
            types: form.types.value
              .split(",")
              .map((part) => part.trim())
              .filter(Boolean),
          });
          output.replaceChildren(notice(t("done", { what: t("edit") })));
        } catch (error) {
          output.replaceChildren(notice(describeProblem(error), "error"));
        }
      },
    },
    h("label", { for: "edit-url" }, t("url")),
    h("input", { id: "edit-url", name: "url", value: subscription.url, required: true }),
    h("label", { for: "edit-types" }, t("types_")),
    h("input", { id: "edit-types", name: "types", value: subscription.types.join(", ") }),
    h("label", { for: "edit-description" }, t("description")),
    h("input", { id: "edit-description", name: "description", value: subscription.description ?? "" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t("edit"))),
  );
  const attemptRows = attempts.map((attempt) =>
    h(
      "tr",
      {},
      h("td", {}, when(attempt.at)),
      h("td", {}, attempt.statusCode ?? attempt.error ?? "—"),
      h("td", { class: "num" }, `${attempt.durationMs} ms`),
      h("td", { class: "num" }, attempt.head),
    ),
  );
  render(
    `${subscription.feed} → ${subscription.url}`,
    h(
      "p",
      {},
      `${t("status")}: `,
      h(
        "span",
        { class: `status-${subscription.status}`, id: "status", "data-status": subscription.status },
        t(subscription.status),
      ),
      ` · ${t("acked")}: `,
      h("span", { id: "acked" }, subscription.acked),
      ` · ${t("head")}: ${subscription.head} · ${t("signed")}: ${subscription.signature}`,
    ),
    subscription.disabledReason ? notice(subscription.disabledReason, "error") : null,
    actions,
    output,
    h("h2", {}, t("attempts")),
    table(t("attempts"), [t("at"), t("answer"), t("duration"), t("head")], attemptRows, t("noAttempts")),
    h("h2", {}, t("change")),
    edit,
  );
}

function newSubscriptionView() {
  const output = h("div", { id: "output" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const fields = event.target.elements;
        const body = {
          feed: fields.feed.value.trim(),
          url: fields.url.value.trim(),
          signature: fields.signature.value,
        };
        const types = fields.types.value
          .split(",")
          .map((part) => part.trim())
          .filter(Boolean);
        if (types.length > 0) body.types = types;
        if (fields.subject.value) body.subject = fields.subject.value;
        if (fields.description.value) body.description = fields.description.value;
        try {
          const created = await api("POST", "/v1/subscriptions", body);
          output.replaceChildren(
            notice(t("created")),
            created.secret ? h("p", { class: "secret" }, t("secretOnce", { secret: created.secret })) : null,
            h("p", {}, h("a", { href: `#/subscriptions/${created.id}` }, created.id)),
          );
        } catch (error) {
          output.replaceChildren(notice(describeProblem(error), "error"));
        }
      },
    },
    h("label", { for: "feed" }, t("feed")),
    h("input", { id: "feed", name: "feed", required: true }),
    h("label", { for: "url" }, t("url")),
    h("input", { id: "url", name: "url", type: "url", required: true }),
    h("label", { for: "types" }, t("types_")),
    h("input", { id: "types", name: "types" }),
    h("label", { for: "subject" }, t("subject")),
    h("input", { id: "subject", name: "subject" }),
    h("label", { for: "description" }, t("description")),
    h("input", { id: "description", name: "description" }),
    h("label", { for: "signature" }, t("signature")),
    h(
      "select",
      { id: "signature", name: "signature" },
      h("option", { value: "v1" }, "v1 (HMAC-SHA256)"),
      h("option", { value: "v1a" }, "v1a (Ed25519)"),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t("create"))),
  );
  render(t("newSubscription"), form, output);
}

function loginView(message) {
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem("seintje.token", event.target.elements.token.value.trim());
        try {
          await api("GET", "/v1/subscriptions?limit=1").catch(async (error) => {
            if (error instanceof Problem && error.status === 403) return api("GET", "/v1/feeds");
            throw error;
          });
          location.hash = "#/feeds";
          route();
        } catch (error) {
          sessionStorage.removeItem("seintje.token");
          const text =
            error instanceof Problem && error.status === 401
              ? t("badToken", { detail: error.document.detail ?? "" })
              : error instanceof Problem && error.status === 403
                ? t("noAccess")
                : describeProblem(error);
          loginView(text);
        }
      },
    },
    h("p", { class: "hint", id: "token-hint" }, t("loginHint")),
    h("label", { for: "token" }, t("token")),
    h("textarea", {
      id: "token",
      name: "token",
      required: true,
      "aria-describedby": "token-hint",
      autocomplete: "off",
      spellcheck: "false",
    }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t("login"))),
  );
  render(t("loginTitle"), message ? notice(message, "error") : null, form);
}

// ---- frame and routing ----

function frame() {
  document.documentElement.lang = lang;
  const skip = document.querySelector(".skip");
  skip.textContent = t("skip");
  const signedIn = Boolean(token());
  const current = location.hash.startsWith("#/subscriptions") ? "subscriptions" : "feeds";
  document
    .getElementById("nav")
    .replaceChildren(
      ...(signedIn
        ? [
            h("a", { href: "#/feeds", "aria-current": current === "feeds" ? "page" : null }, t("feeds")),
            h(
              "a",
              { href: "#/subscriptions", "aria-current": current === "subscriptions" ? "page" : null },
              t("subscriptions"),
            ),
          ]
        : []),
    );
  document.getElementById("language").textContent = t("language");
  const logout = document.getElementById("logout");
  logout.textContent = t("logout");
  logout.hidden = !signedIn;
}

async function route() {
  stopTail();
  frame();
  if (!token()) return loginView();
  const [path, search] = location.hash.slice(1).split("?");
  const parts = (path || "/feeds").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "feeds" && parts[1]) await feedView(parts[1], new URLSearchParams(search));
    else if (parts[0] === "subscriptions" && parts[1] === "new") newSubscriptionView();
    else if (parts[0] === "subscriptions" && parts[1]) await subscriptionView(parts[1]);
    else if (parts[0] === "subscriptions") await subscriptionsView();
    else await feedsView();
  } catch (error) {
    if (error instanceof Problem && error.status === 401) {
      sessionStorage.removeItem("seintje.token");
      return loginView(t("badToken", { detail: error.document.detail ?? "" }));
    }
    render(
      error instanceof Problem && error.status === 404 ? t("notFound") : "seintje",
      notice(describeProblem(error), "error"),
    );
  }
}

document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main().focus();
});
document.getElementById("language").addEventListener("click", () => {
  lang = lang === "nl" ? "en" : "nl";
  sessionStorage.setItem("seintje.lang", lang);
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem("seintje.token");
  location.hash = "#/feeds";
  route();
});
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#/")) route();
});
route();
