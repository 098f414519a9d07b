/**
 * Run inside a namespace: `node tripwire.js PORT` listens on [::]:PORT (dual stack, so every
 * local IPv4 and IPv6 address of the namespace), prints {"port":PORT} once listening, then one
 * line "accept REMOTE LOCAL" per connection. SSRF tests assert that it prints nothing more.
 */
import net from 'node:net';

const port = Number(process.argv[2]);
const server = net.createServer((s) => {
  process.stdout.write(`accept ${s.remoteAddress} ${s.localAddress}\n`);
  s.destroy();
});
server.listen({ port, host: '::', ipv6Only: false }, () => process.stdout.write(JSON.stringify({ port }) + '\n'));
