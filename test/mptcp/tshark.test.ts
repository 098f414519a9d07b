/**
 * Second opinion from Wireshark: frames built with every subtype go through tshark, and its
 * dissection (subtypes, keys, tokens, DSS numbers, addresses) must agree with our decoder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeMptcpOptions, mptcpToken, type MptcpOption } from '../../src/mptcp/options';
import { LinkType, newTcpPacket, parseFrame } from '../../src/mptcp/packet';
import { frame, pcapFile } from './encode';
import { F, Subflow } from '../sniffer/conv';

const hasTshark = spawnSync('tshark', ['-v']).status === 0;

const SERVER_KEY = 0x0123456789abcdefn;
const CLIENT_KEY = 0xfedcba9876543210n;
const mpc = (len: number, extra: Partial<MptcpOption> = {}): MptcpOption =>
  ({ kind: 'mp_capable', version: 1, checksumRequired: true, extensibility: false, noJoinToSource: false, hmacSha256: true, length: len, ...extra }) as MptcpOption;

test('tshark dissects our frames the way our decoder does', { skip: hasTshark ? false : 'tshark not installed' }, () => {
  const s = new Subflow({ addr: '10.0.1.2', port: 40000 }, { addr: '10.0.9.1', port: 443 });
  const j = new Subflow({ addr: '2001:db8::2', port: 40001 }, { addr: '2001:db8::1', port: 443 });
  const ips = [
    s.seg(0, F.SYN, [mpc(4)]),
    s.seg(1, F.SYN | F.ACK, [mpc(12, { senderKey: SERVER_KEY })]),
    s.seg(0, F.ACK, [mpc(20, { senderKey: CLIENT_KEY, receiverKey: SERVER_KEY })]),
    s.seg(0, F.ACK, [{ kind: 'dss', dataFin: false, dataAck: 0x1122334455667788n, dataAck64: true, dsn: 77n, dsn64: false, subflowSeq: 1, dataLength: 100, checksum: 0xabcd }], 100),
    s.seg(1, F.ACK, [{ kind: 'add_addr', echo: false, family: 4, addressId: 5, address: '10.0.9.2', port: 8443, hmac: 9n }]),
    s.seg(1, F.ACK, [{ kind: 'remove_addr', addressIds: [5, 6] }]),
    s.seg(0, F.ACK, [{ kind: 'mp_prio', backup: true }]),
    s.seg(1, F.RST | F.ACK, [{ kind: 'mp_fastclose', receiverKey: CLIENT_KEY }, { kind: 'mp_tcprst', transient: true, flags: 1, reason: 3 }]),
    j.seg(0, F.SYN, [{ kind: 'mp_join', phase: 'syn', backup: true, addressId: 2, token: mptcpToken(SERVER_KEY), nonce: 0x01020304 }]),
    j.seg(1, F.ACK, [{ kind: 'add_addr', echo: true, family: 6, addressId: 9, address: '2001:db8::9' }]),
  ];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tshark-'));
  try {
    const file = path.join(dir, 'x.pcap');
    writeFileSync(file, pcapFile(LinkType.Ethernet, ips.map((ip) => frame(ip, LinkType.Ethernet))));
    const fields = [
      'tcp.options.mptcp.subtype', 'tcp.options.mptcp.sendkey', 'tcp.options.mptcp.recvkey', 'mptcp.expected_token',
      'tcp.options.mptcp.rawdataack', 'tcp.options.mptcp.rawdataseqno', 'tcp.options.mptcp.datalvllen',
      'tcp.options.mptcp.addrid', 'tcp.options.mptcp.ipv4', 'tcp.options.mptcp.ipv6', 'tcp.options.mptcp.port', 'tcp.options.mptcp.echo',
      'tcp.options.mptcp.backup.flag', 'tcp.options.mptcp.recvtok', 'tcp.options.mptcp.rst_reason',
    ];
    const out = execFileSync('tshark', ['-r', file, '-o', 'mptcp.analyze_mptcp:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const rows = out.trimEnd().split('\n').map((l) => Object.fromEntries(l.split('|').map((v, i) => [fields[i]!, v])));
    assert.equal(rows.length, ips.length);
    ips.forEach((ip, i) => {
      const p = parseFrame(ip, LinkType.Raw, newTcpPacket());
      assert.equal(p.kind, 'tcp');
      if (p.kind !== 'tcp') return;
      const ours = decodeMptcpOptions(p.buf, p.optStart, p.optEnd);
      const row = rows[i]!;
      const subtypes = ours.map((o) => ['mp_capable', 'mp_join', 'dss', 'add_addr', 'remove_addr', 'mp_prio', 'mp_fail', 'mp_fastclose', 'mp_tcprst'].indexOf(o.kind));
      assert.deepEqual(row['tcp.options.mptcp.subtype']!.split(',').map(Number), subtypes, `frame ${i + 1} subtypes`);
      for (const o of ours) {
        switch (o.kind) {
          case 'mp_capable':
            if (o.senderKey !== undefined) {
              assert.equal(BigInt(row['tcp.options.mptcp.sendkey']!), o.senderKey);
              assert.equal(Number(row['mptcp.expected_token']), mptcpToken(o.senderKey), 'Wireshark computes the same token');
            }
            if (o.receiverKey !== undefined) assert.equal(BigInt(row['tcp.options.mptcp.recvkey']!), o.receiverKey);
            break;
          case 'dss':
            assert.equal(BigInt(row['tcp.options.mptcp.rawdataack']!), o.dataAck);
            assert.equal(BigInt(row['tcp.options.mptcp.rawdataseqno']!), o.dsn);
            assert.equal(Number(row['tcp.options.mptcp.datalvllen']), o.dataLength);
            break;
          case 'add_addr':
            assert.equal(row[o.family === 4 ? 'tcp.options.mptcp.ipv4' : 'tcp.options.mptcp.ipv6'], o.address);
            assert.equal(row['tcp.options.mptcp.port'], o.port === undefined ? '' : String(o.port));
            assert.equal(Number(row['tcp.options.mptcp.echo']), o.echo ? 1 : 0);
            assert.equal(Number(row['tcp.options.mptcp.addrid']), o.addressId);
            break;
          case 'mp_join':
            assert.equal(Number(row['tcp.options.mptcp.recvtok']), o.token);
            assert.equal(Number(row['tcp.options.mptcp.backup.flag']), o.backup ? 1 : 0);
            break;
          case 'mp_tcprst':
            assert.equal(Number(row['tcp.options.mptcp.rst_reason']), o.reason);
            break;
          case 'remove_addr':
            assert.deepEqual(row['tcp.options.mptcp.addrid']!.split(',').map(Number), o.addressIds);
            break;
          default:
            break;
        }
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
