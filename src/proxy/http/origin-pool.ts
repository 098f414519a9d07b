/**
 * The forward proxy's HTTP client, without Node's http client objects per request: one string
 * written per request head, the body (if any) streamed after it, the response parsed by llhttp
 * (response-parser.ts) and handed to the caller as head, body and end; one request at a time per
 * connection (no pipelining). New connections come from the caller's connect (the upstream
 * connector, so every new socket passes the destination policy after DNS); idle ones are kept per
 * origin, newest reused first, up to 256 per origin, for 60 s, unreferenced (they never keep the
 * process up), and still read: an idle connection that sends anything or closes is dropped at
 * once, so a stray byte is never taken for the next request's answer. A connection whose response
 * ended before its request body was sent is closed, not kept. sendOnce() runs one request over a
 * given socket (a parent's tunnel) and closes it after.
 */
import type net from 'node:net';
import type { Readable } from 'node:stream';
import type { ClientConnection, Destination } from '../../core/connection';
import { ErrorCode, ProxyError } from '../../core/errors';
import { ResponseParser } from './response-parser';

/** What one request is told about its response. */
export interface OriginExchange {
  /** The origin connection carrying the request (new or reused), before its head is written. */
  socket(socket: net.Socket): void;
  head(statusCode: number, statusMessage: string, rawHeaders: string[]): void;
  /** A part of the body; false asks to wait for OriginRequest.resume() before more. */
  body(chunk: Buffer): boolean;
  /** The response ended; `last` is the body part that arrived with its end. */
  end(last: Buffer | null): void;
  /** No (complete) response: connect failure, origin reset or closed early, invalid response. */
  error(err: unknown): void;
}

/** A request body to stream after the head: as it comes (Content-Length sent) or chunk-encoded. */
export interface RequestBody {
  from: Readable;
  chunked: boolean;
}

/** One request: its whole head, its body, and whether its response has none (HEAD). */
export interface OriginMessage {
  head: string;
  body: RequestBody | null;
  headRequest: boolean;
}

export interface OriginRequest {
  /** Read on after body() said to wait. */
  resume(): void;
  /** The client went away: drop the origin connection unless the response is complete. */
  abort(): void;
}

const MAX_IDLE_PER_ORIGIN = 256;
const IDLE_TIMEOUT_MS = 60_000;
/** How often TCP keepalive probes an origin connection (as Node's http.Agent). */
const KEEPALIVE_PROBE_MS = 1_000;

export class OriginPool {
  private readonly idle = new Map<string, OriginConnection[]>();

  /** `connect` makes a new origin socket (policy checked, attributed to `conn`), resumed or paused. */
  constructor(private readonly connect: (dest: Destination, conn: ClientConnection) => Promise<net.Socket>) {}

  /** Send `msg` to `dest` for `conn`'s request, over an idle connection to it or a new one. */
  send(dest: Destination, conn: ClientConnection, msg: OriginMessage, ex: OriginExchange): OriginRequest {
    const key = `${dest.port} ${dest.host}`;
    const reused = this.idle.get(key)?.pop();
    if (reused) return reused.start(ex, msg);
    const pending = new PendingRequest();
    this.connect(dest, conn).then(
      (socket) => {
        if (pending.aborted) return void socket.destroy();
        pending.attach(new OriginConnection(this, key, socket).start(ex, msg));
      },
      (err: unknown) => {
        if (!pending.aborted) ex.error(err);
      },
    );
    return pending;
  }

  /** One request over `socket`, closed after its response. */
  sendOnce(socket: net.Socket, msg: OriginMessage, ex: OriginExchange): OriginRequest {
    return new OriginConnection(this, null, socket).start(ex, msg);
  }

  /** A connection that answered in full and may carry the next request. */
  release(c: OriginConnection): void {
    if (c.key === null) return c.destroy();
    let list = this.idle.get(c.key);
    if (!list) this.idle.set(c.key, (list = []));
    if (list.length >= MAX_IDLE_PER_ORIGIN) return c.destroy();
    list.push(c);
  }

  forget(c: OriginConnection): void {
    if (c.key === null) return;
    const list = this.idle.get(c.key);
    const at = list?.indexOf(c) ?? -1;
    if (at < 0) return;
    list!.splice(at, 1);
    if (list!.length === 0) this.idle.delete(c.key);
  }
}

/** A request still waiting for its new connection. */
class PendingRequest implements OriginRequest {
  aborted = false;
  private started: OriginRequest | null = null;
  attach(r: OriginRequest): void {
    this.started = r;
  }
  resume(): void {
    this.started?.resume();
  }
  abort(): void {
    this.aborted = true;
    this.started?.abort();
  }
}

class OriginConnection implements OriginRequest {
  private readonly parser: ResponseParser;
  private ex: OriginExchange | null = null;
  private headRequest = false;
  /** The head at hand is a 1xx (not 101): it is skipped, and its end is not the response's. */
  private informational = false;
  /** Set by the parser's callbacks during one execute(), acted on after it. */
  private head: { statusCode: number; statusMessage: string; rawHeaders: string[] } | null = null;
  private chunks: Buffer[] = [];
  private complete = false;
  private keepAlive = false;
  /** Why the connection cannot go on (a second or unasked-for response, an upgrade). */
  private broken: string | null = null;
  /** The request body still being sent. */
  private sending: RequestBody | null = null;

  constructor(
    private readonly pool: OriginPool,
    /** Where it is kept when idle; null: never kept. */
    readonly key: string | null,
    readonly socket: net.Socket,
  ) {
    this.parser = new ResponseParser({
      onHead: (statusCode, statusMessage, rawHeaders, keepAlive, upgrade) => {
        if (!this.ex || this.head || this.complete) this.broken ??= 'a response nobody asked for';
        else if (upgrade) this.broken ??= `an unasked-for upgrade (${statusCode})`;
        this.informational = statusCode >= 100 && statusCode < 200 && !upgrade;
        if (this.broken || this.informational) return true;
        this.head = { statusCode, statusMessage, rawHeaders };
        this.keepAlive = keepAlive;
        // A 304 has no body whatever its framing fields say (as Node's client reads it).
        return this.headRequest || statusCode === 304;
      },
      onBody: (chunk) => {
        if (!this.broken) this.chunks.push(chunk);
      },
      onComplete: () => {
        if (this.informational) this.informational = false;
        else if (!this.broken) this.complete = true;
      },
    });
    socket.setKeepAlive(true, KEEPALIVE_PROBE_MS);
    socket.setTimeout(IDLE_TIMEOUT_MS);
    socket.on('data', (d: Buffer) => this.settle(this.parser.execute(d)));
    // Upstream sockets are half-open capable: the origin's FIN ends the connection here.
    socket.on('end', () => {
      this.settle(this.ex ? this.parser.finish() : null);
      this.destroy();
    });
    socket.on('timeout', () => {
      if (!this.ex) this.destroy();
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => {
      this.pool.forget(this);
      this.parser.close();
      this.fail(new ProxyError(ErrorCode.UpstreamReset, 'origin closed the connection before the response ended'));
    });
    socket.resume();
  }

  start(ex: OriginExchange, msg: OriginMessage): OriginRequest {
    this.ex = ex;
    this.headRequest = msg.headRequest;
    this.socket.ref();
    ex.socket(this.socket);
    this.socket.write(msg.head, 'latin1');
    if (msg.body) this.sendBody(msg.body);
    return this;
  }

  private readonly onBodyData = (chunk: Buffer): void => {
    const socket = this.socket;
    let more: boolean;
    if (!this.sending!.chunked) more = socket.write(chunk);
    else {
      // An empty chunk would read as the last one.
      if (chunk.length === 0) return;
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      more = socket.write('\r\n');
      socket.uncork();
    }
    if (!more) {
      this.sending!.from.pause();
      socket.once('drain', this.onBodyDrain);
    }
  };
  private readonly onBodyDrain = (): void => void this.sending?.from.resume();
  private readonly onBodyEnd = (): void => {
    if (this.sending!.chunked) this.socket.write('0\r\n\r\n');
    this.stopSending();
  };

  private sendBody(body: RequestBody): void {
    this.sending = body;
    body.from.on('data', this.onBodyData);
    body.from.on('end', this.onBodyEnd);
  }

  /** No more of the request body goes to the origin; what the client still sends is read and dropped. */
  private stopSending(): void {
    const body = this.sending;
    if (!body) return;
    this.sending = null;
    body.from.removeListener('data', this.onBodyData);
    body.from.removeListener('end', this.onBodyEnd);
    this.socket.removeListener('drain', this.onBodyDrain);
    body.from.resume();
  }

  resume(): void {
    this.socket.resume();
  }

  abort(): void {
    if (this.ex) {
      this.ex = null;
      this.destroy();
    }
  }

  destroy(): void {
    this.stopSending();
    // Out of the idle list now: its 'close' comes a tick later.
    this.pool.forget(this);
    this.socket.destroy();
  }

  /**
   * After the parser ran over a piece of input (or the end): hand on what it found. A response
   * that completed is delivered even when what followed it breaks the connection (as Node's
   * client did), the connection then closed instead of kept.
   */
  private settle(parseError: Error | null): void {
    const ex = this.ex;
    const broken = parseError ?? (this.broken === null ? null : new ProxyError(ErrorCode.UpstreamReset, `origin sent ${this.broken}`));
    if (!ex) return void (broken && this.destroy());
    if (this.head) {
      const h = this.head;
      this.head = null;
      ex.head(h.statusCode, h.statusMessage, h.rawHeaders);
      // The client left while its head was written.
      if (this.ex !== ex) return;
    }
    const body = this.chunks.length === 0 ? null : this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    if (!this.complete) {
      if (broken) return this.fail(broken);
      if (body && !ex.body(body)) this.socket.pause();
      return;
    }
    this.complete = false;
    this.ex = null;
    // Kept only when the request was sent in full and nothing odd followed the response.
    if (this.keepAlive && !broken && !this.sending && !this.socket.destroyed) {
      this.socket.unref();
      this.pool.release(this);
    } else this.destroy();
    ex.end(body);
  }

  /** The connection is done for; a request on it gets the error. */
  private fail(err: unknown): void {
    const ex = this.ex;
    this.ex = null;
    this.destroy();
    ex?.error(err);
  }
}
