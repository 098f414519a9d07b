/**
 * The one FFI binding of libc (koffi): every libc call the proxy makes, and their constants.
 * Nothing outside src/sys may import this (test/layers.test.ts checks it): callers use the
 * typed modules beside it.
 */
import koffi from 'koffi';

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_TCP = 6;
export const IPPROTO_MPTCP = 262;

export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_KEEPALIVE = 9;
export const SO_PRIORITY = 12;
export const SO_REUSEPORT = 15;
/** Like SO_SNDBUF/SO_RCVBUF, but past net.core.[rw]mem_max (needs CAP_NET_ADMIN). */
export const SO_SNDBUFFORCE = 32;
/** The network namespace's cookie: unique per namespace for the whole boot, never reused (Linux 5.14+). */
export const SO_NETNS_COOKIE = 71;
export const SO_RCVBUFFORCE = 33;
export const SO_MARK = 36;
/** Classic BPF socket filter (struct sock_fprog); attaching again replaces it. */
export const SO_ATTACH_FILTER = 26;

export const IPPROTO_IP = 0;
export const IP_TOS = 1;
export const IP_TRANSPARENT = 19;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const IPV6_TRANSPARENT = 75;
export const IPV6_TCLASS = 67;

export const SOL_TCP = 6;
export const TCP_NODELAY = 1;
export const TCP_MAXSEG = 2;
export const TCP_KEEPIDLE = 4;
export const TCP_KEEPINTVL = 5;
export const TCP_KEEPCNT = 6;
export const TCP_INFO = 11;
export const TCP_CONGESTION = 13;
export const TCP_FASTOPEN = 23;
export const TCP_FASTOPEN_NO_COOKIE = 34;
export const TCP_NOTSENT_LOWAT = 25;
export const TCP_IS_MPTCP = 43;

export const SOL_MPTCP = 284;
export const MPTCP_INFO = 1;
export const MPTCP_TCPINFO = 2;
export const MPTCP_SUBFLOW_ADDRS = 3;
export const MPTCP_FULL_INFO = 4;

export const POLLOUT = 4;
export const RLIMIT_NOFILE = 7;
export const EINPROGRESS = 115;
export const EOPNOTSUPP = 95;
/** sendto() flag: connect and put the data in the SYN (TCP Fast Open, client side). */
export const MSG_FASTOPEN = 0x20000000;

const lib = koffi.load('libc.so.6');
// Declares the struct type the getrlimit/setrlimit signatures below name.
koffi.struct('rlimit', { cur: 'uint64_t', max: 'uint64_t' });
koffi.struct('sock_fprog', { len: 'uint16_t', filter: 'void *' });

export const libc = {
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
  close: lib.func('int close(int fd)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
  /** setsockopt(SO_ATTACH_FILTER): koffi passes the program Buffer's address in the struct. */
  setsockoptFprog: lib.func('int setsockopt(int fd, int level, int name, const sock_fprog *val, uint32_t len)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)'),
  getsockname: lib.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)'),
  /** Blocking; always called with .async so it runs on a worker thread. */
  poll: lib.func('int poll(_Inout_ void *fds, uint64_t nfds, int timeout)'),
  strerror: lib.func('const char *strerror(int errnum)'),
  getrlimit: lib.func('int getrlimit(int resource, _Out_ rlimit *rlim)'),
  setrlimit: lib.func('int setrlimit(int resource, const rlimit *rlim)'),
  send: lib.func('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
  sendto: lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  recv: lib.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
  write: lib.func('intptr_t write(int fd, const void *buf, size_t len)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  /** Variadic: pass the third argument as ('int', value). */
  fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
  ifIndexToName: lib.func('const char *if_indextoname(unsigned int ifindex, _Out_ uint8_t *ifname)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long req, void *arg)'),
};

export function errno(): number {
  return koffi.errno();
}

/** Errno names for the values the socket modules act on (Node's own error codes use these). */
const ERRNO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(koffi.os.errno).map(([name, n]) => [n, name]));

export class SysError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${libc.strerror(errno) as string}`);
    this.name = 'SysError';
  }
  /** "ECONNREFUSED" etc., like Node's own socket errors. */
  get code(): string {
    return ERRNO_NAMES[this.errno] ?? `E${this.errno}`;
  }
}

export function check(call: string, rc: number): number {
  if (rc < 0) throw new SysError(call, errno());
  return rc;
}
