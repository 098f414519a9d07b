/**
 * Run inside a namespace: `node ns-bridge.js SOCKET_PATH HOST PORT`. Listens on a unix socket
 * (reachable from every namespace through the file system) and turns each connection into a TCP
 * connection to HOST:PORT made from this namespace (MPTCP when started under mptcpize). Half
 * closes pass through, so HTTP and raw echo semantics survive the hop. Prints "ready".
 */
import net from 'node:net';

function pipeBoth(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  const kill = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', kill);
  b.on('error', kill);
}

function main(): void {
  const [sockPath, host, port] = process.argv.slice(2);
  const server = net.createServer({ allowHalfOpen: true }, (local) => {
    local.pause();
    const remote = net.connect({ host, port: Number(port), allowHalfOpen: true });
    remote.once('connect', () => {
      pipeBoth(local, remote);
      local.resume();
    });
    remote.once('error', () => local.destroy());
  });
  server.listen(sockPath, () => process.stdout.write('ready\n'));
}

main();
