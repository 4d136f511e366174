/**
 * webchannel browser subscriber: one WebSocket to a channel that reopens by itself.
 *
 * Served by webchannel at GET /webchannel/v1/client.js; no dependencies.
 *
 *   import { subscribe } from "https://push.example.com/webchannel/v1/client.js";
 *   const sub = subscribe(`wss://push.example.com/webchannel/v1/channels/${encodeURIComponent(id)}`, {
 *     getToken: async () => (await (await fetch("/my/token")).json()).token,
 *     onMessage: (data) => console.log(JSON.parse(new TextDecoder().decode(data))),
 *   });
 *   sub.close(); // when the page no longer needs the channel
 *
 * Close codes: 4000 (channel closed) and 4003 (the client sent data) stop it; any other
 * close (1006 dropped, 1012 server restart, 4008 too slow, 4013 Redis unavailable, ...)
 * reconnects after a jittered exponential backoff. A refused handshake (an invalid or
 * expired token; browsers only see 1006 before "open"), a close with 4005 (the token
 * reached its `exp`) and a token whose `exp` has passed make it ask the page for a fresh
 * token before the next attempt.
 *
 * @module webchannel
 */

/** Close codes after which reconnecting cannot help. */
const STOP_CODES = new Set([4000, 4003]);
/** The server closed the socket because its token expired: reconnect with a fresh one. */
const TOKEN_EXPIRED = 4005;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
/** A connection open this long counts as healthy: the backoff starts again from the first delay. */
const STABLE_MS = 10000;

/**
 * @typedef {object} Status
 * @property {"connecting"|"open"|"reconnecting"|"stopped"} state
 * @property {number} [code] close code of the socket that just closed
 * @property {string} [reason] its close reason
 * @property {number} [delay] milliseconds until the next attempt ("reconnecting")
 * @property {unknown} [error] what getToken threw, or why a token could not be offered
 */

/**
 * @typedef {object} Options
 * @property {() => string | Promise<string>} getToken a fresh token for the channel, from the page's backend
 * @property {(data: ArrayBuffer | string) => void} onMessage called with each message, unchanged: an
 *   ArrayBuffer of its bytes, or with frames "text" a string when the bytes are valid UTF-8
 * @property {(status: Status) => void} [onStatus] called on every change of state
 * @property {"binary" | "text"} [frames] "text" asks the server for UTF-8 messages as text frames
 */

/**
 * The `exp` claim of a JWT (Unix seconds), or undefined when it cannot be read.
 * @param {string} token
 * @returns {number | undefined}
 */
function expiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Subscribe to a channel until close() or a close code that says retrying is useless.
 * The token travels as a WebSocket subprotocol ("webchannel.bearer.<token>"), not in the URL,
 * so it stays out of access logs.
 * @param {string} url the channel's WebSocket URL (ws: or wss:, id percent-encoded)
 * @param {Options} options
 * @returns {{close(): void}}
 */
export function subscribe(url, { getToken, onMessage, onStatus = () => {}, frames = "binary" }) {
  const target = new URL(url); // a malformed URL throws here, to the caller
  if (frames === "text") target.searchParams.set("frames", "text");
  let token = null;
  let socket = null;
  let timer = null;
  let failures = 0;
  let stopped = false;

  const stop = (detail) => {
    stopped = true;
    clearTimeout(timer);
    onStatus({ state: "stopped", ...detail });
  };

  const retry = (detail) => {
    const delay = Math.random() * Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** failures);
    failures += 1;
    onStatus({ state: "reconnecting", delay, ...detail });
    timer = setTimeout(connect, delay);
  };

  async function connect() {
    if (stopped) return;
    onStatus({ state: "connecting" });
    const exp = token && expiry(token);
    if (!token || (exp !== undefined && exp * 1000 <= Date.now())) {
      try {
        token = await getToken();
      } catch (error) {
        token = null;
        if (!stopped) retry({ error });
        return;
      }
      if (stopped) return;
    }
    let ws;
    try {
      ws = new WebSocket(target, ["webchannel", "webchannel.bearer." + token]);
    } catch (error) { // a token that cannot be a subprotocol: ask for another one
      token = null;
      return retry({ error });
    }
    let openedAt = 0;
    socket = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      openedAt = Date.now();
      onStatus({ state: "open" });
    };
    ws.onmessage = (event) => onMessage(event.data);
    ws.onclose = ({ code, reason }) => {
      socket = null;
      if (stopped) return;
      if (STOP_CODES.has(code)) return stop({ code, reason });
      if (!openedAt || code === TOKEN_EXPIRED) token = null; // refused before open: the token may be the reason
      if (openedAt && Date.now() - openedAt >= STABLE_MS) failures = 0;
      retry({ code, reason });
    };
  }

  connect();
  return {
    /** Close the socket and stop reconnecting. */
    close() {
      if (stopped) return;
      stop({});
      if (socket) socket.close(1000);
    },
  };
}
