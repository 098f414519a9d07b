/**
 * Fallback origin when nginx is not installed: serves the files of a directory (sparse files of
 * zeros) over keep-alive HTTP/1.1. Usage: node origin.js PORT DIR
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const [port, dir] = [Number(process.argv[2]), process.argv[3]];
const server = http.createServer((req, res) => {
  const file = path.join(dir, path.basename(new URL(req.url ?? '/', 'http://x').pathname));
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(404, { 'content-length': 0 }).end();
      return;
    }
    res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
    fs.createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
  });
});
server.keepAliveTimeout = 120_000;
server.listen(port, '127.0.0.1');
