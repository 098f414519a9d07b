/**
 * HTTP/1.x responses parsed by llhttp through Node's own parser binding, the one its http client
 * uses, so an origin's response is judged exactly as before (same strictness, same HPE_* errors)
 * without the http client's per-request objects. `node:_http_common` is not a documented module
 * (Node 20 to 24 export the binding there); without it the proxy cannot forward HTTP and says so
 * at start.
 */

/** The parts of Node's HTTPParser binding used here. */
interface NodeHttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): undefined | Error;
  close(): void;
  [callback: number]: unknown;
}
interface NodeHttpParserClass {
  new (): NodeHttpParser;
  RESPONSE: number;
  kLenientNone: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}

const Parser = ((): NodeHttpParserClass => {
  const cls = (require('node:_http_common') as { HTTPParser?: NodeHttpParserClass }).HTTPParser;
  if (typeof cls !== 'function' || typeof cls.kOnHeadersComplete !== 'number') {
    throw new Error(`Node ${process.version} has no HTTP parser binding in node:_http_common (the HTTP forwarder reads responses with it)`);
  }
  return cls;
})();

/** What a response parser reports, in order, for every response on one connection. */
export interface ResponseEvents {
  /**
   * A response head. Returns true when the response has no body whatever its header says (the
   * answer to HEAD). `upgrade` is a 101 or an upgrade the request never asked for.
   */
  onHead(statusCode: number, statusMessage: string, rawHeaders: string[], keepAlive: boolean, upgrade: boolean): boolean;
  onBody(chunk: Buffer): void;
  onComplete(): void;
}

/** Most header lines kept per response, as Node's http client (2000 pairs). */
const MAX_RAW_HEADERS = 4000;

export class ResponseParser {
  private readonly parser: NodeHttpParser;
  /** Header lines of a head that arrived in several pieces (llhttp hands them over in batches). */
  private pendingHeaders: string[] = [];

  constructor(events: ResponseEvents) {
    const parser = new Parser();
    // maxHeaderSize 0: Node's default (--max-http-header-size), as its http client.
    parser.initialize(Parser.RESPONSE, {}, 0, Parser.kLenientNone);
    parser[Parser.kOnHeaders] = (headers: string[]): void => {
      if (this.pendingHeaders.length < MAX_RAW_HEADERS) this.pendingHeaders.push(...headers);
    };
    parser[Parser.kOnHeadersComplete] = (_major: number, _minor: number, headers: string[] | undefined, _method: unknown, _url: unknown, statusCode: number, statusMessage: string, upgrade: boolean, keepAlive: boolean): number => {
      let raw = headers;
      if (raw === undefined) {
        raw = this.pendingHeaders;
        this.pendingHeaders = [];
      }
      if (raw.length > MAX_RAW_HEADERS) raw = raw.slice(0, MAX_RAW_HEADERS);
      // 1: skip the body (llhttp still ends the message).
      return events.onHead(statusCode, statusMessage, raw, keepAlive, upgrade) ? 1 : 0;
    };
    parser[Parser.kOnBody] = (chunk: Buffer): void => events.onBody(chunk);
    parser[Parser.kOnMessageComplete] = (): void => {
      // Trailer fields arrive like headers; they are not forwarded (nor were they by Node's client).
      this.pendingHeaders = [];
      events.onComplete();
    };
    this.parser = parser;
  }

  /** Feed bytes; an Error (code HPE_*) when they are not a valid response stream. */
  execute(data: Buffer): Error | null {
    const r = this.parser.execute(data);
    return r instanceof Error ? r : null;
  }

  /** The connection ended: completes a response delimited by the close, or says what was cut. */
  finish(): Error | null {
    return this.parser.finish() ?? null;
  }

  close(): void {
    this.parser.close();
  }
}
