/**
 * The userspace path manager's commands to the kernel (`mptcp_pm` generic netlink: announce,
 * remove, subflow create/destroy, set flags, each for one connection token), on a socket of its
 * own: the event socket's reader thread takes every datagram that arrives on it. Generic netlink
 * runs the command inside sendmsg() and queues the ACK at once, so a command is one synchronous
 * round trip of microseconds.
 */
import { CodedError } from '../core/errors';
import { GenlSocket } from '../sys/netlink';
import { MPTCP_PM_NAME, decodeGetFamilyReply, decodePmAck, encodeGetFamilyRequest, encodePmCommand, type GenlFamily, type PmCommand } from './netlink-codec';

export class PmCommandError extends CodedError<'MPX_PM_COMMAND'> {
  constructor(
    message: string,
    /** Positive errno from the kernel (0 when the exchange itself failed). */
    readonly errno: number,
  ) {
    super('MPX_PM_COMMAND', message);
  }
}

/** The `mptcp_pm` family (id and groups) on an open generic netlink socket; throws PmCommandError. */
export function resolvePmFamily(sock: GenlSocket): GenlFamily {
  const seq = sock.nextSeq();
  const fam = decodeGetFamilyReply(sock.request(encodeGetFamilyRequest(MPTCP_PM_NAME, seq)), seq);
  if (!fam.ok) throw new PmCommandError(`generic netlink family ${MPTCP_PM_NAME}: ${fam.error.detail}`, fam.error.errno ?? 0);
  return fam.value;
}

export class PmCommandSocket {
  private constructor(
    private readonly sock: GenlSocket,
    private readonly familyId: number,
  ) {}

  static open(): PmCommandSocket {
    const sock = GenlSocket.open(1 << 16);
    try {
      sock.extendedAcks();
      return new PmCommandSocket(sock, resolvePmFamily(sock).id);
    } catch (e) {
      void sock.close();
      throw e instanceof PmCommandError ? e : new PmCommandError(`mptcp_pm command socket: ${(e as Error).message}`, 0);
    }
  }

  /** Run one command; throws PmCommandError with the kernel's errno and text when it refuses. */
  send(c: PmCommand): void {
    const seq = this.sock.nextSeq();
    let reply: Buffer;
    try {
      reply = this.sock.request(encodePmCommand(c, this.familyId, seq));
    } catch (e) {
      throw new PmCommandError(`${c.cmd}: ${(e as Error).message}`, 0);
    }
    const ack = decodePmAck(reply, seq);
    if (!ack.ok) throw new PmCommandError(`${c.cmd}: ${ack.error.detail}`, 0);
    if (ack.value.errno !== 0) throw new PmCommandError(`${c.cmd} token ${c.token.toString(16)}: errno ${ack.value.errno}${ack.value.message ? ` (${ack.value.message})` : ''}`, ack.value.errno);
  }

  close(): Promise<void> {
    return this.sock.close();
  }
}
