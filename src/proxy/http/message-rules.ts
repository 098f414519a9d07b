/**
 * RFC 9112 message rules that Node's parser (llhttp) lets through, checked on every request head
 * before anything is forwarded or tunnelled: HTTP/1.x only (llhttp reads a request line without
 * a version as HTTP/0.9, and accepts HTTP/2.0), exactly one Host field line with a valid value
 * (§3.2), no Transfer-Encoding in an HTTP/1.0 request (§6.1: its framing is faulty), and single
 * spaces in the request line (§3: llhttp skips runs of spaces around the target, and nothing it
 * hands over shows them, so the line is looked for in the bytes received).
 */
import type http from 'node:http';
import type net from 'node:net';
import { ErrorCode, ProxyError } from '../../core/errors';

/** uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2); empty is allowed. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::\d*)?$/;

export function messageRuleBreach(req: http.IncomingMessage, lines: RequestLineWatch | undefined): ProxyError | null {
  if (req.httpVersionMajor !== 1) return new ProxyError(ErrorCode.VersionUnsupported, `HTTP/${req.httpVersion} request line`);
  const bad = (detail: string): ProxyError => new ProxyError(ErrorCode.BadRequest, detail);
  const hosts: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === 'host') hosts.push(req.rawHeaders[i + 1]!);
  if (hosts.length > 1) return bad(`${hosts.length} Host field lines`);
  if (hosts.length === 1 && !HOST_VALUE.test(hosts[0]!)) return bad(`Host ${JSON.stringify(hosts[0]!.slice(0, 100))}`);
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return bad('Transfer-Encoding in an HTTP/1.0 request');
  if (lines && !lines.sawRequestLine(req)) return bad('request line is not method SP target SP version');
  return null;
}

/** The parts of Node's server-side parser the watch uses (see RequestLineWatch). */
interface ServerParser {
  _consumed?: boolean;
  getCurrentBuffer(): Buffer;
  [callback: number]: unknown;
}
const kOnExecute = (require('node:_http_common') as { HTTPParser: { kOnExecute: number } }).HTTPParser.kOnExecute;

/**
 * The bytes of one connection that the next request line can be in. While a body is still being
 * read everything before the newest chunk is dropped (the next head starts after that body), and
 * at most `keep` bytes before the newest chunk are held: a head padded beyond that (leading blank
 * lines and spaces before field values are not counted by the header size limit) fails the
 * check, which refuses it.
 *
 * The chunks are taken where Node's server parses them: when it reads the socket natively (its
 * parser consumes the socket; the usual case), from the parser: the chunk being parsed when a head
 * completes (getCurrentBuffer), and every other one after it was parsed (the parser's execute
 * callback), so the socket stays on the native path. When the socket holds bytes put back in
 * front (a hand-off from the fast path or the mixed port), which Node parses from JavaScript, a
 * 'data' tap ahead of the parser takes every chunk instead (that makes Node parse them all in
 * JavaScript).
 */
export class RequestLineWatch {
  private chunks: Buffer[] = [];
  private held = 0;
  /** The request whose line was found last: until its body is read, no next head can start. */
  private reading: http.IncomingMessage | null = null;
  /** Parser mode: the parser, and Node's own execute callback the watch runs before. */
  private readonly parser: ServerParser | null;
  private nodeOnExecute: unknown = null;
  /** Parser mode: the chunk being parsed is already taken (a head completed in it). */
  private currentTaken = false;
  /** Whether a body was still being read before the chunk now parsed. */
  private bodyPending = false;

  private readonly onData = (chunk: Buffer): void => {
    this.bodyPending = this.reading !== null && !this.reading.complete;
    this.take(chunk);
  };

  private readonly onExecute = (...args: unknown[]): unknown => {
    if (!this.currentTaken) this.take(this.parser!.getCurrentBuffer());
    // Node answers CONNECT from its own callback: the chunk is held already then.
    this.currentTaken = true;
    try {
      return (this.nodeOnExecute as (...a: unknown[]) => unknown).apply(this.parser, args);
    } finally {
      this.currentTaken = false;
      this.bodyPending = this.reading !== null && !this.reading.complete;
    }
  };

  /** Call after Node's http server took the socket. */
  constructor(
    private readonly socket: net.Socket,
    private readonly keep: number,
  ) {
    const parser = (socket as net.Socket & { parser?: ServerParser }).parser;
    if (parser?._consumed && socket.readableLength === 0 && typeof parser[kOnExecute] === 'function') {
      this.parser = parser;
      this.nodeOnExecute = parser[kOnExecute];
      parser[kOnExecute] = this.onExecute;
    } else {
      this.parser = null;
      // A 'data' listener makes Node's server parse in JS, after this tap, instead of natively.
      socket.prependListener('data', this.onData);
    }
  }

  private take(chunk: Buffer): void {
    if (this.bodyPending) {
      this.chunks = [];
      this.held = 0;
    }
    this.chunks.push(chunk);
    this.held += chunk.length;
    while (this.chunks.length > 1 && this.held - this.chunks[0]!.length - chunk.length >= this.keep) this.held -= this.chunks.shift()!.length;
  }

  /** Whether `req`'s request line arrived exactly as "METHOD SP target SP HTTP/x.y CRLF". */
  sawRequestLine(req: http.IncomingMessage): boolean {
    if (this.parser && !this.currentTaken) {
      this.take(this.parser.getCurrentBuffer());
      this.currentTaken = true;
    }
    // llhttp hands the target over byte for byte, as latin1.
    const line = Buffer.from(`${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`, 'latin1');
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    let found = -1;
    for (let at = buf.indexOf(line); at >= 0; at = buf.indexOf(line, at + 1)) {
      if (found < 0) found = at;
      // Preferred at a line start; but a request may also follow a body straight away (no CRLF
      // after a Content-Length body), and the tap cannot tell where that body ended.
      if (at === 0 || buf[at - 1] === 0x0a) {
        found = at;
        break;
      }
    }
    if (found < 0) return false;
    const rest = buf.subarray(found + line.length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.held = rest.length;
    this.reading = req;
    return true;
  }

  /** The socket became a tunnel: its bytes are no longer HTTP. */
  stop(): void {
    if (this.parser) {
      if (this.parser[kOnExecute] === this.onExecute) this.parser[kOnExecute] = this.nodeOnExecute;
    } else this.socket.removeListener('data', this.onData);
    this.chunks = [];
    this.held = 0;
  }
}
