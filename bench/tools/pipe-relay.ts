/**
 * The naive baseline: a SOCKS5 relay (no auth, CONNECT to IPv4 or a name) that does what most
 * Node proxies do, `client.pipe(upstream); upstream.pipe(client)`. Run under mptcpize so its
 * listener speaks MPTCP. Usage: node pipe-relay.js PORT
 */
import net from 'node:net';

function relay(client: net.Socket): void {
  client.on('error', () => client.destroy());
  client.once('data', (greeting) => {
    if (greeting[0] !== 5) return client.destroy();
    client.write(Buffer.from([5, 0]));
    client.once('data', (req) => {
      let host: string;
      let off: number;
      if (req[3] === 1) {
        host = `${req[4]}.${req[5]}.${req[6]}.${req[7]}`;
        off = 8;
      } else if (req[3] === 3) {
        host = req.subarray(5, 5 + req[4]).toString();
        off = 5 + req[4];
      } else return client.destroy();
      const up = net.connect(req.readUInt16BE(off), host, () => {
        client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
        const rest = req.subarray(off + 2);
        if (rest.length) up.write(rest);
        client.pipe(up);
        up.pipe(client);
      });
      up.on('error', () => (client.destroy(), up.destroy()));
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
    });
  });
}

const server = net.createServer(relay);
server.listen(Number(process.argv[2]), '127.0.0.1');
