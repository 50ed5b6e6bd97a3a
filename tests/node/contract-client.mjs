// Talks to Tether's /ws with partysocket (ReconnectingWebSocket) and to /api/events with the
// eventsource package, both reconnecting by themselves. Prints one JSON line per thing it sees;
// tests/test_node_clients.py drives the server side and reads the lines.
//
//   node contract-client.mjs http://127.0.0.1:8080 TOKEN DEVICE
import { WebSocket as ReconnectingWebSocket } from "partysocket";
import { EventSource } from "eventsource";
import WS from "ws";

const [base, token, device] = process.argv.slice(2);
const wsBase = base.replace(/^http/, "ws");
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

let lastId = null;
let sentFirst = false;
let wsOpen = false;
let sseOpen = false;
// The first command goes out once both streams are open, so both must show all of its events.
const sendFirst = () => {
  if (sentFirst || !wsOpen || !sseOpen) return;
  sentFirst = true;
  socket.send(JSON.stringify({ type: "send", ref: "first", device, name: "echo", args: { from: "node" } }));
};
const socket = new ReconnectingWebSocket(
  () => `${wsBase}/ws?token=${encodeURIComponent(token)}` +
        (lastId ? `&last_event_id=${encodeURIComponent(lastId)}` : ""),
  [],
  { WebSocket: WS, minReconnectionDelay: 200, maxReconnectionDelay: 2000, connectionTimeout: 4000 },
);
socket.addEventListener("open", () => {
  say({ via: "ws", phase: "open", resumed_from: lastId });
  wsOpen = true;
  sendFirst();
});
socket.addEventListener("message", (message) => {
  const frame = JSON.parse(message.data);
  if (frame.type === "event") {
    lastId = frame.id;
    say({ via: "ws", id: frame.id, kind: frame.kind, cmd: frame.data.id ?? null, state: frame.data.state ?? null });
  } else {
    say({ via: "ws", type: frame.type, ref: frame.ref ?? null, cmd: frame.command?.id ?? null });
  }
});
socket.addEventListener("close", (event) => say({ via: "ws", phase: "close", code: event.code }));

const source = new EventSource(`${base}/api/events?token=${encodeURIComponent(token)}`);
source.addEventListener("open", () => {
  say({ via: "sse", phase: "open" });
  sseOpen = true;
  sendFirst();
});
source.addEventListener("error", () => say({ via: "sse", phase: "error" }));
for (const kind of ["command", "presence", "device_event"]) {
  source.addEventListener(kind, (event) => {
    const data = JSON.parse(event.data);
    say({ via: "sse", id: event.lastEventId, kind, cmd: data.id ?? null, state: data.state ?? null });
  });
}

process.on("SIGTERM", () => { socket.close(); source.close(); process.exit(0); });
