// Peer server for the benchmarks, on Node's `ws` (see bench/peers/README.md).
// One room: a message whose first byte is "P" goes to every other connection;
// any other message is echoed to its sender.
//   node node_ws_peer.js PORT   (after `npm install` in this directory)
'use strict';
const { WebSocketServer } = require('ws');

const SUBPROTOCOL = 'parley.msgpack.v1';
const port = Number(process.argv[2]);
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 16 << 20,
  handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (data.length > 0 && data[0] === 0x50) {
      for (const client of wss.clients) {
        if (client !== ws && client.readyState === 1) client.send(data, { binary: true });
      }
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});

process.on('SIGTERM', () => process.exit(0));
