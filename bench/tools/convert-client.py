#!/usr/bin/env python3
"""A small RFC 8803 (0-RTT TCP Convert Protocol) client over MPTCP with TCP Fast Open.

The Convert message (a Connect TLV, optionally a Cookie TLV) and the first application bytes go in
the data of the MPTCP SYN (sendto with MSG_FASTOPEN), so the conversion costs no round trip.
The client's namespace needs net.ipv4.tcp_fastopen with 0x1 (client) and 0x4 (data without a
cookie), e.g. `sysctl -w net.ipv4.tcp_fastopen=5`; otherwise the kernel sends the data after the
handshake, which a converter accepts too.

  convert-client.py CONVERTER DEST [options]          stdin -> DEST, DEST -> stdout
  printf 'GET / HTTP/1.0\\r\\nHost: example.com\\r\\n\\r\\n' | convert-client.py 10.0.0.1:5124 93.184.215.14:80

CONVERTER is HOST[:PORT] (port 5124 by default), DEST is HOST:PORT or [IPv6]:PORT. The converter's
reply (its TLVs) is printed as one JSON line on stderr. Options:
  --cookie HEX      add a Cookie TLV
  --info            send an Info TLV instead of a Connect (prints the Supported TCP Extensions)
  --raw HEX         send these bytes as the Convert message (for testing converters)
  --data-file FILE  send FILE after the message instead of stdin
  --summary         print one JSON line on stdout (reply, bytes received and their sha256), not the data
  --no-tfo          connect first, then send the message (a client without TCP Fast Open)
  --tcp             plain TCP instead of MPTCP
  --keep-open       after the data, keep the sending side open until the converter closes
"""
import argparse
import hashlib
import ipaddress
import json
import socket
import sys
import threading

IPPROTO_MPTCP = 262
CONVERT_DEFAULT_PORT = 5124
TLV_NAMES = {1: 'info', 10: 'connect', 20: 'extended-tcp-header', 21: 'supported-tcp-extensions', 22: 'cookie', 30: 'error'}


def endpoint(text, default_port=None):
    if text.startswith('['):
        host, _, rest = text[1:].partition(']')
        port = rest[1:] if rest.startswith(':') else None
    elif text.count(':') == 1:
        host, port = text.split(':')
    else:
        host, port = text, None
    if port is None:
        if default_port is None:
            raise SystemExit(f'{text}: needs a port')
        port = default_port
    return host, int(port)


def tlv(kind, body):
    body = bytes(body)
    pad = (-(2 + len(body))) % 4
    return bytes([kind, (2 + len(body) + pad) // 4]) + body + b'\0' * pad


def message(tlvs):
    body = b''.join(tlvs)
    return bytes([1, (4 + len(body)) // 4, 0x22, 0x63]) + body


def connect_tlv(host, port):
    ip = ipaddress.ip_address(host)
    addr = ip.packed if ip.version == 6 else ipaddress.IPv6Address('::ffff:' + host).packed
    return tlv(10, port.to_bytes(2, 'big') + addr)


def parse_reply(buf):
    """The converter's reply: (list of TLV dicts, bytes it took) or (None, 0) when incomplete."""
    if len(buf) < 4 or len(buf) < buf[1] * 4:
        return None, 0
    if buf[0] != 1 or buf[2:4] != b'\x22\x63' or buf[1] == 0:
        return [{'type': 'not-convert', 'hex': buf[:4].hex()}], 4
    total = buf[1] * 4
    out, at = [], 4
    while at < total:
        kind, length = buf[at], buf[at + 1] * 4
        if length == 0 or at + length > total:
            out.append({'type': 'bad-tlv', 'hex': buf[at:total].hex()})
            break
        t = buf[at:at + length]
        d = {'type': TLV_NAMES.get(kind, kind)}
        if kind == 30:
            d.update(code=t[2], value=t[3:].hex())
        elif kind == 21:
            d.update(kinds=[k for k in t[4:] if k])
        elif kind == 20:
            d.update(header=t[4:].hex())
        out.append(d)
        at += length
    return out, total


def main():
    ap = argparse.ArgumentParser(description='RFC 8803 Convert client (MPTCP + TCP Fast Open)')
    ap.add_argument('converter')
    ap.add_argument('dest', nargs='?')
    ap.add_argument('--cookie')
    ap.add_argument('--info', action='store_true')
    ap.add_argument('--raw')
    ap.add_argument('--data-file')
    ap.add_argument('--summary', action='store_true')
    ap.add_argument('--no-tfo', action='store_true')
    ap.add_argument('--tcp', action='store_true')
    ap.add_argument('--keep-open', action='store_true')
    a = ap.parse_args()

    if a.raw is not None:
        msg = bytes.fromhex(a.raw)
    elif a.info:
        msg = message([tlv(1, b'\0\0')])
    else:
        if not a.dest:
            ap.error('DEST is needed for a Connect')
        tlvs = [connect_tlv(*endpoint(a.dest))]
        if a.cookie:
            tlvs.append(tlv(22, b'\0\0' + bytes.fromhex(a.cookie)))
        msg = message(tlvs)
    if a.data_file:
        with open(a.data_file, 'rb') as f:
            data = f.read()
    elif a.raw is None and not a.info and not a.summary:
        data = None  # stream stdin
    else:
        data = b''

    host, port = endpoint(a.converter, CONVERT_DEFAULT_PORT)
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP if a.tcp else IPPROTO_MPTCP)
    first = msg + (data or b'')
    if a.no_tfo:
        s.connect((host, port))
        s.sendall(first)
    else:
        sent = s.sendto(first, socket.MSG_FASTOPEN, (host, port))
        s.sendall(first[sent:])

    def pump_stdin():
        try:
            if data is None:
                while True:
                    chunk = sys.stdin.buffer.read1(65536)
                    if not chunk:
                        break
                    s.sendall(chunk)
            if not a.keep_open:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=pump_stdin, daemon=True).start()

    buf, reply, received, digest = b'', None, 0, hashlib.sha256()
    error = None
    try:
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            if reply is None:
                buf += chunk
                reply, used = parse_reply(buf)
                if reply is None:
                    continue
                print(json.dumps({'reply': reply}), file=sys.stderr, flush=True)
                chunk, buf = buf[used:], b''
            received += len(chunk)
            digest.update(chunk)
            if not a.summary and chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except ConnectionResetError:
        error = 'reset'
    mptcp = s.getsockopt(socket.IPPROTO_TCP, 43) == 1 if not a.tcp else False
    s.close()
    if a.summary:
        print(json.dumps({'reply': reply, 'received': received, 'sha256': digest.hexdigest(), 'mptcp': mptcp, 'error': error,
                          'leftover': buf.hex()}))
    return 0 if reply is not None else 1


if __name__ == '__main__':
    sys.exit(main())
