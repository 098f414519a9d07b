/**
 * Run inside a namespace: `node page-server.js HOST` serves a page for browser tests and prints
 * {"port":N}. GET / is HTML that loads /app.js (a second request), which writes a marker into
 * the DOM, so only a browser that ran the script shows it. The page also shows the Via header
 * it was requested with: proof that the request came through the proxy.
 */
import http from 'node:http';

const host = process.argv[2] ?? '127.0.0.1';
const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer((req, res) => {
  if (req.url === '/app.js') {
    res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
    res.end(`document.getElementById('marker').textContent = 'rendered-' + (6 * 7) + '-' + document.getElementById('via').textContent.length;`);
    return;
  }
  if (req.url === '/') {
    const via = escape(String(req.headers.via ?? 'none'));
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><html><head><title>mptcp-proxy test page</title></head><body><p id="via">${via}</p><p id="marker">not rendered</p><script src="/app.js"></script></body></html>`);
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
});
server.listen(0, host, () => process.stdout.write(JSON.stringify({ port: (server.address() as { port: number }).port }) + '\n'));
