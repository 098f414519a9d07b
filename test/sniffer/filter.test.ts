/**
 * The capture filter, compiled by the real libpcap and run over a capture file: it must keep the
 * handshakes, signalling and pure ACKs of MPTCP subflows in both IP families and drop DSS-only
 * data and all plain TCP. Also the `sniff --read` command end to end on such a file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as Pcap from 'pcap';
import { tokenHex } from '../../src/core/subflow-id';
import { mptcpToken, type MptcpOption } from '../../src/mptcp/options';
import { LinkType } from '../../src/mptcp/packet';
import { mptcpCaptureFilter } from '../../src/sniffer/capture';
import { parseSniffArgs } from '../../src/sniffer/sniff-command';
import { frame, ipPacket, pcapFile } from '../mptcp/encode';
import { F, Subflow, TS, dssAck } from './conv';
import { encodeMptcpOption } from '../mptcp/encode';

const pcap = require('pcap') as typeof Pcap;

const dss = (o: Partial<MptcpOption> = {}): Buffer =>
  encodeMptcpOption({ kind: 'dss', dataFin: false, dataAck: 5n, dataAck64: true, dsn: 9n, dsn64: true, subflowSeq: 1, dataLength: 1000, ...o } as MptcpOption);
const sack1 = Buffer.from([1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
const addAddr = encodeMptcpOption({ kind: 'add_addr', echo: false, family: 4, addressId: 1, address: '10.9.9.9', hmac: 1n });

/** [name, keep?, options, flags, payload] per family. */
const CASES: [string, boolean, Buffer[], number, number][] = [
  ['plain SYN', true, [], F.SYN, 0],
  ['plain RST', true, [], F.RST, 0],
  ['plain FIN', true, [TS], F.FIN | F.ACK, 0],
  ['plain data', false, [TS], F.ACK, 1000],
  ['plain pure ACK', false, [TS], F.ACK, 0],
  ['DSS data', false, [TS, dss()], F.ACK, 1000],
  ['DSS pure ACK after TS', true, [TS, encodeMptcpOption(dssAck(1n))], F.ACK, 0],
  ['DSS pure ACK, no TS', true, [encodeMptcpOption(dssAck(1n))], F.ACK, 0],
  ['DSS pure ACK after TS and SACK', true, [TS, sack1, encodeMptcpOption(dssAck(1n))], F.ACK, 0],
  ['ADD_ADDR with data', true, [TS, addAddr], F.ACK, 500],
  ['MP_CAPABLE with data', true, [TS, encodeMptcpOption({ kind: 'mp_capable', version: 1, checksumRequired: false, extensibility: false, noJoinToSource: false, hmacSha256: true, length: 22, senderKey: 1n, receiverKey: 2n, dataLength: 10 })], F.ACK, 10],
  ['other option kind 30 look-alike in payload', false, [TS], F.ACK, 1000],
];

function buildFile(dir: string): { file: string; expected: number[] } {
  const frames: Buffer[] = [];
  const expected: number[] = [];
  let port = 10_000;
  for (const [src, dst] of [['10.0.0.1', '10.0.0.2'], ['2001:db8::1', '2001:db8::2']] as const) {
    for (const [, keep, options, flags, payload] of CASES) {
      port++;
      frames.push(frame(ipPacket({ src, dst, sport: port, dport: 80, flags, options, payload: Buffer.alloc(payload, 30) }), LinkType.Ethernet));
      if (keep) expected.push(port);
    }
  }
  const file = path.join(dir, 'filter.pcap');
  writeFileSync(file, pcapFile(LinkType.Ethernet, frames));
  return { file, expected };
}

test('libpcap compiles the filter and it keeps exactly what the tracker needs', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snf-filter-'));
  try {
    const { file, expected } = buildFile(dir);
    const session = pcap.createOfflineSession(file, { filter: mptcpCaptureFilter() });
    const kept: number[] = [];
    session.on('packet', (p: Pcap.PacketWithHeader) => kept.push(p.buf.readUInt16BE(p.buf.readUInt16BE(12) === 0x86dd ? 54 : 34)));
    await new Promise<void>((resolve) => session.once('complete', () => resolve()));
    session.close();
    const names = (ports: number[]): string[] => ports.map((p) => `${p > 10_000 + CASES.length ? 'v6' : 'v4'} ${CASES[(p - 10_001) % CASES.length]![0]}`);
    assert.deepEqual(names(kept), names(expected));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sniff --read FILE --json prints one JSON event per line', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snf-cmd-'));
  try {
    const key = 0xabcdef0123456789n;
    const s = new Subflow({ addr: '10.0.1.2', port: 4000 }, { addr: '10.0.9.1', port: 443 });
    const mpc = (len: number, x: object): MptcpOption => ({ kind: 'mp_capable', version: 1, checksumRequired: false, extensibility: false, noJoinToSource: false, hmacSha256: true, length: len, ...x }) as MptcpOption;
    const ips = [s.seg(0, F.SYN, [mpc(4, {})]), s.seg(1, F.SYN | F.ACK, [mpc(12, { senderKey: key })]), s.seg(0, F.ACK, [mpc(20, { senderKey: 7n, receiverKey: key })])];
    const file = path.join(dir, 'x.pcap');
    writeFileSync(file, pcapFile(LinkType.LinuxSll, ips.map((ip) => frame(ip, LinkType.LinuxSll))));
    const entry = path.resolve(__dirname, '..', '..', 'src', 'sniffer', 'sniff-command.js');
    const script = `require(${JSON.stringify(entry)}).runSniffCommand(process.argv.slice(1)).then((c) => process.exit(c))`;
    const r = spawnSync(process.execPath, ['-e', script, '--', '--read', file, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 1);
    assert.deepEqual({ ...lines[0], time: 0 }, {
      event: 'subflow', time: 0, connection: tokenHex(mptcpToken(key)), kind: 'initial', src: '10.0.1.2:4000', dst: '10.0.9.1:443', interface: 'file', backup: false,
    });
    const text = spawnSync(process.execPath, ['-e', script, '--', '-r', file], { encoding: 'utf8' });
    assert.match(text.stdout, new RegExp(`${tokenHex(mptcpToken(key))} subflow initial 10\\.0\\.1\\.2:4000 -> 10\\.0\\.9\\.1:443 on file`));
    const bad = spawnSync(process.execPath, ['-e', script, '--', '--bogus'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown argument "--bogus"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('argument parsing', () => {
  assert.deepEqual(parseSniffArgs(['--interface', 'a', '-i', 'b', '--json']), { interfaces: ['a', 'b'], read: null, json: true, allPackets: false });
  assert.deepEqual(parseSniffArgs(['--interface=eth0']), { interfaces: ['eth0'], read: null, json: false, allPackets: false });
  assert.equal(typeof parseSniffArgs([]), 'string');
  assert.equal(typeof parseSniffArgs(['--interface']), 'string');
  assert.equal(typeof parseSniffArgs(['-r', 'f', '-i', 'x']), 'string');
  assert.equal(parseSniffArgs(['--help']), '');
});
