/**
 * `mptcp-proxy sniff`: watch MPTCP subflows come and go on some interfaces (on the proxy host or
 * on a router in the path) and print one line per event; JSON lines with --json.
 */
import { formatEventText, type SniffEvent } from './events';
import { SniffError, SubflowSniffer } from './capture';

const USAGE = `usage: mptcp-proxy sniff --interface IF [--interface IF]... [--json]
       mptcp-proxy sniff --read FILE.pcap [--json]
  --interface, -i IF   capture on IF (repeatable; "any" takes every interface)
  --read, -r FILE      decode a capture file instead, then exit
  --json               one JSON object per line, with an "event" field
  --all-packets        capture every TCP segment (no kernel filter; more load)
`;

interface SniffArgs {
  interfaces: string[];
  read: string | null;
  json: boolean;
  allPackets: boolean;
}

/** Parse argv; returns a message on bad input. */
export function parseSniffArgs(argv: readonly string[]): SniffArgs | string {
  const out: SniffArgs = { interfaces: [], read: null, json: false, allPackets: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = (): string | null => inline ?? (i + 1 < argv.length ? argv[++i]! : null);
    switch (flag) {
      case '--interface':
      case '-i': {
        const v = value();
        if (!v) return `${flag} needs an interface name`;
        out.interfaces.push(v);
        break;
      }
      case '--read':
      case '-r': {
        const v = value();
        if (!v) return `${flag} needs a file name`;
        out.read = v;
        break;
      }
      case '--json':
        out.json = true;
        break;
      case '--all-packets':
        out.allPackets = true;
        break;
      case '--help':
      case '-h':
        return '';
      default:
        return `unknown argument "${a}"`;
    }
  }
  if (out.read === null && out.interfaces.length === 0) return 'give at least one --interface (or --read FILE)';
  if (out.read !== null && out.interfaces.length > 0) return '--read and --interface do not go together';
  return out;
}

export async function runSniffCommand(argv: string[]): Promise<number> {
  const args = parseSniffArgs(argv);
  if (typeof args === 'string') {
    process.stderr.write(args ? `sniff: ${args}\n${USAGE}` : USAGE);
    return args ? 2 : 0;
  }
  const print = args.json
    ? (e: SniffEvent): void => void process.stdout.write(JSON.stringify(e) + '\n')
    : (e: SniffEvent): void => void process.stdout.write(formatEventText(e) + '\n');
  const sniffer = new SubflowSniffer(print, args.allPackets ? { filter: 'tcp' } : {});
  try {
    if (args.read !== null) {
      await sniffer.readFile(args.read);
      return 0;
    }
    sniffer.start(args.interfaces);
  } catch (err) {
    sniffer.close();
    const code = err instanceof SniffError ? err.code : 'SNIFF_FAILED';
    process.stderr.write(`sniff: ${code}: ${(err as Error).message}\n`);
    return 1;
  }
  process.stderr.write(`sniff: capturing on ${args.interfaces.join(', ')}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  const st = sniffer.stats();
  sniffer.close();
  process.stderr.write(`sniff: stopped after ${st.packets} packets (${st.malformed} malformed, dropped ${JSON.stringify(st.dropped)})\n`);
  return 0;
}
