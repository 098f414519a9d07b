/**
 * Reads handshake messages off a client socket with the incremental codec: buffer what arrives,
 * offer it to a parse function, wait for more while it says "incomplete". The socket is paused
 * between messages so a client cannot make the proxy buffer more than one chunk past the
 * handshake; whatever it sent beyond the last message is handed on (detach) to the relay.
 */
import type net from 'node:net';
import { ErrorCode, ProxyError } from '../../core/errors';
import type { ParseResult } from './codec/common';

export class HandshakeReader {
  private buf: Buffer;
  private wake: (() => void) | null = null;
  private gone = false;

  constructor(
    private readonly socket: net.Socket,
    head: Buffer = Buffer.alloc(0),
  ) {
    this.buf = head;
    socket.on('data', this.onData);
    socket.on('end', this.onGone);
    socket.on('close', this.onGone);
    socket.on('error', this.onGone);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.socket.pause();
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.wakeUp();
  };

  private readonly onGone = (): void => {
    this.gone = true;
    this.wakeUp();
  };

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Resolve with the next message; reject with a ProxyError for bad bytes or a vanished client. */
  async read<T>(parse: (buf: Buffer) => ParseResult<T>): Promise<T> {
    for (;;) {
      const r = parse(this.buf);
      if (r.kind === 'ok') {
        this.buf = this.buf.subarray(r.consumed);
        return r.value;
      }
      if (r.kind === 'error') throw new ProxyError(r.code, r.detail);
      if (this.gone) throw new ProxyError(ErrorCode.BadRequest, 'client closed the connection during the handshake');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.socket.resume();
      });
    }
  }

  /** Stop reading; returns the bytes received past the last message. The socket stays paused. */
  detach(): Buffer {
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onGone);
    this.socket.off('close', this.onGone);
    this.socket.off('error', this.onGone);
    // A read still waiting (handshake timeout) must end instead of resuming the socket.
    this.gone = true;
    this.wakeUp();
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
