/**
 * A tiny authoritative DNS server for SSRF tests, run inside a namespace:
 * `node dns-server.js HOST PORT TABLE_JSON` where TABLE_JSON maps lower-case names to
 * {"A": [...], "AAAA": [...]}. Answers A/AAAA from the table (TTL 0, so nothing caches),
 * NOERROR with no answers for other types of known names, NXDOMAIN otherwise. Prints
 * {"port":PORT} when bound and one line "query NAME TYPE" per question.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { expandIPv6 } from '../../src/core/address';

export type DnsTable = Record<string, { A?: string[]; AAAA?: string[] }>;

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** Question name and type, and where the question section ends; null for malformed queries. */
export function parseQuestion(msg: Buffer): { name: string; type: number; end: number } | null {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let i = 12;
  while (i < msg.length && msg[i] !== 0) {
    const len = msg[i]!;
    if (len > 63 || i + 1 + len > msg.length) return null;
    labels.push(msg.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  if (i + 5 > msg.length) return null;
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(i + 1), end: i + 5 };
}

function addressBytes(addr: string): Buffer {
  if (net.isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  return Buffer.from(expandIPv6(addr).split(':').join(''), 'hex');
}

export function answer(query: Buffer, table: DnsTable): Buffer | null {
  const q = parseQuestion(query);
  if (!q) return null;
  const entry = table[q.name];
  const addrs = entry ? (q.type === TYPE_A ? entry.A : q.type === TYPE_AAAA ? entry.AAAA : undefined) ?? [] : [];
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  // QR, opcode 0, AA, RD copied, RA; NXDOMAIN for unknown names.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | (entry ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addrs.length, 6);
  const answers = addrs.map((a) => {
    const rdata = addressBytes(a);
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(0, 6); // TTL 0
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return Buffer.concat([header, query.subarray(12, q.end), ...answers]);
}

function main(): void {
  const [host, port, tableJson] = process.argv.slice(2) as [string, string, string];
  const table = JSON.parse(tableJson) as DnsTable;
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  sock.on('message', (msg, rinfo) => {
    const q = parseQuestion(msg);
    if (q) process.stdout.write(`query ${q.name} ${q.type}\n`);
    const reply = answer(msg, table);
    if (reply) sock.send(reply, rinfo.port, rinfo.address);
  });
  sock.bind(Number(port), host, () => process.stdout.write(JSON.stringify({ port: sock.address().port }) + '\n'));
}

if (require.main === module) main();
