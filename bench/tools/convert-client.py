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
  --burst N --rate R  the bench's latency load (bench/workloads/latency.ts): N converts at R per
                    second, each with "ID########\\n" behind the Connect in its SYN (per-socket
                    TCP_FASTOPEN_NO_COOKIE, so no sysctl 0x4 is needed), checked against the echo
                    and closed; prints {"ok":N,"errors":N,"firstError":...} on stdout
"""
import argparse
import hashlib
import ipaddress
import json
import selectors
import socket
import sys
import threading
import time

IPPROTO_MPTCP = 262
TCP_FASTOPEN_NO_COOKIE = 34
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


def burst(converter, msg, count, rate, proto, give_up_s=30):
    """Open `count` converts at `rate` per second, non-blocking; a tally like latency-client's."""
    host, port = converter
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    tally = {'ok': 0, 'errors': 0, 'firstError': None}

    def finish(s, error=None):
        sel.unregister(s)
        s.close()
        if error is None:
            tally['ok'] += 1
        else:
            tally['errors'] += 1
            tally['firstError'] = tally['firstError'] or error

    start, started = time.monotonic(), 0
    while started < count or sel.get_map():
        now = time.monotonic()
        if now - start > count / rate + give_up_s:
            for key in list(sel.get_map().values()):
                finish(key.fileobj, 'no echo in time')
            break
        due = min(count, int((now - start) * rate) + 1)
        for i in range(started, due):
            line = b'ID%08d\n' % i
            s = socket.socket(family, socket.SOCK_STREAM, proto)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
            st = {'out': msg + line, 'buf': b'', 'reply': None, 'line': line}
            sel.register(s, selectors.EVENT_WRITE, st)
            try:
                st['out'] = st['out'][s.sendto(st['out'], socket.MSG_FASTOPEN, converter):]
            except BlockingIOError:
                pass  # no data in the SYN: sent once connected
            except OSError as e:
                finish(s, str(e))
                continue
            if not st['out']:
                sel.modify(s, selectors.EVENT_READ, st)
        started = max(started, due)
        for key, events in sel.select(0.001):
            s, st = key.fileobj, key.data
            try:
                if events & selectors.EVENT_WRITE:
                    st['out'] = st['out'][s.send(st['out']):]
                    if not st['out']:
                        sel.modify(s, selectors.EVENT_READ, st)
                    continue
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                finish(s, str(e))
                continue
            if not chunk:
                finish(s, f'closed after {len(st["buf"])} bytes')
                continue
            st['buf'] += chunk
            if st['reply'] is None:
                st['reply'], used = parse_reply(st['buf'])
                if st['reply'] is None:
                    continue
                st['buf'] = st['buf'][used:]
                if [t['type'] for t in st['reply']] != ['extended-tcp-header']:
                    finish(s, json.dumps(st['reply']))
                    continue
            if len(st['buf']) >= len(st['line']):
                finish(s, None if st['buf'] == st['line'] else 'echo mismatch')
    return tally


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
    ap.add_argument('--burst', type=int)
    ap.add_argument('--rate', type=float, default=500)
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
    if a.burst:
        proto = socket.IPPROTO_TCP if a.tcp else IPPROTO_MPTCP
        print(json.dumps(burst(endpoint(a.converter, CONVERT_DEFAULT_PORT), msg, a.burst, a.rate, proto)), flush=True)
        return 0
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
