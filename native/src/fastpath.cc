// Native accept-to-splice fast path: epoll loops (one per thread) accept on the proxy's MPTCP
// listening sockets, read and answer SOCKS5 (no-auth), SOCKS4 and HTTP CONNECT handshakes to IP
// literals, apply the access policy from tables TypeScript compiled, connect upstream
// non-blocking and splice the pair in the same loop (splice_pairs.h). No JavaScript runs per connection:
// connection records and handed-off sockets reach JS in batches (one thread-safe call drains
// everything queued since the last one).
//
// What it does not handle goes to the TS front ends with the bytes already read (see
// fastpath_parse.h): names needing DNS, authentication, denied clients, HTTP forward, UDP
// ASSOCIATE, BIND, malformed or unusual input, a client that closes mid-handshake. Its own
// refusals (destination, port, connect failures, timeouts, limits) answer with the bytes TS
// compiled from the one error table (src/core/errors.ts), so they read the same on either path.
//
// Descriptors: native owns accepted and upstream fds until it closes them or hands a client fd
// to JS (which then owns it). A relayed client's fd number reaches JS in its open record, so
// the tuner, the registry and status pages read and set its socket options as on the TS path:
// native closes it only after JS has taken the close record (see Deliver), so the number never
// names another socket while JS may still use it. Listening fds belong to JS; detach() returns
// only once no loop watches one any more.
#include <napi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fastpath_parse.h"
#include "splice_native.h"
#include "splice_pairs.h"
#include "wake_queue.h"

namespace fastpath {
namespace {

constexpr int kIpprotoMptcp = 262;
constexpr int kSolMptcp = 284;
constexpr int kMptcpInfo = 1;
constexpr int kTcpIsMptcp = 43;
constexpr size_t kBuf = 4096;        // handshake bytes kept per connection
constexpr int kAcceptBatch = 64;     // accepts per wake-up, so one busy listener cannot starve the rest
constexpr int64_t kSocksGraceMs = 1000;  // as closeGracefully in src/proxy/socks/server.ts
constexpr int64_t kHttpGraceMs = 2000;   // as the HTTP front end's refusals

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock of process.hrtime.bigint()
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
int64_t MonoMs() { return MonoNs() / 1000000; }
double WallMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) * 1000 + double(ts.tv_nsec / 1000000);
}

// ---- policy tables -------------------------------------------------------------------------

struct Cidr {
  int family;
  uint8_t addr[16];
  int bits;
};

bool Contains(const std::vector<Cidr>& set, int family, const uint8_t* a) {
  for (const Cidr& c : set) {
    if (c.family != family) continue;
    int full = c.bits / 8, rest = c.bits % 8;
    if (memcmp(c.addr, a, size_t(full)) != 0) continue;
    if (rest && ((c.addr[full] ^ a[full]) & uint8_t(0xff << (8 - rest)))) continue;
    return true;
  }
  return false;
}

struct Refusal {
  std::string http;
  uint8_t socks5 = 1;
  uint8_t socks4 = 0x5b;
};

// Compiled by TypeScript (src/fastpath/tables.ts), swapped whole on reload.
struct Tables {
  std::vector<Cidr> clients, denied, opened;
  std::vector<bool> ports;  // empty: every port
  bool handOffAll = false;
  uint32_t maxConnections = 20000, maxPerClient = 2000;
  int64_t handshakeMs = 15000, connectTimeoutMs = 10000, idleMs = 300000;
  bool upstreamMptcp = false;
  ParseLimits parse{2048, 100};
  size_t pipeSize = 1 << 18;
  std::vector<Refusal> refusals;  // by error code index
  int codeHandshakeTimeout = 0, codeDestDenied = 0, codePortDenied = 0, codeConnectTimeout = 0, codeLimit = 0, codeInternal = 0;
  std::unordered_map<int, int> errnoCode;  // connect errno → error code index
};

std::shared_ptr<const Tables> gTables;

std::shared_ptr<const Tables> CurrentTables() { return std::atomic_load(&gTables); }

// ---- records to JavaScript -----------------------------------------------------------------

enum RecKind : uint8_t { kRecOpen = 1, kRecClose = 2, kRecDrop = 3 };

// One connection event; JS reads it at these offsets (src/fastpath/records.ts).
struct Rec {
  uint8_t kind;          // 0
  uint8_t proto;         // 1
  uint8_t clientFamily;  // 2
  int8_t mptcp;          // 3  -1 unknown
  uint16_t clientPort;   // 4
  uint16_t destPort;     // 6
  uint32_t listener;     // 8
  uint32_t token;        // 12
  uint8_t clientAddr[16];  // 16
  uint64_t nid;          // 32
  uint64_t acceptedNs;   // 40
  uint64_t connectedNs;  // 48  0: never connected
  uint64_t closedNs;     // 56
  double startedAtMs;    // 64
  double bytesUp;        // 72
  double bytesDown;      // 80
  int16_t code;          // 88  -1: ok
  uint8_t subflows;      // 90
  uint8_t end;           // 91  relay end (splice_native::EndReason) + 1, 0: no relay
  int32_t err;           // 92
  char dest[64];         // 96
  char upstream[56];     // 160
  int32_t fd;            // 216 relayed client fd, open until JS has the close record; -1: none
  uint32_t reserved;     // 220
};
static_assert(sizeof(Rec) == 224, "record layout is read by src/fastpath/records.ts");

struct Handoff {
  int fd;
  uint32_t listener;
  uint8_t proto;
  bool greeted;
  int8_t mptcp;
  uint32_t token;
  uint8_t subflows;
  uint64_t acceptedNs;
  std::string key;  // for release()
  std::string head;
};

std::mutex gQueueMu;
std::vector<Rec> gRecs;
std::vector<Handoff> gHandoffs;
bool gScheduled = false;
void Deliver(Napi::Env env, Napi::Function cb, std::nullptr_t*, std::nullptr_t*);
using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, std::nullptr_t, Deliver>;
Tsfn gTyped;
bool gTsfnSet = false;
std::atomic<uint64_t> gNextId{0};
std::atomic<int> gActive{0};  // connections native holds (handshake, connect, relay, closing)

void Schedule(std::unique_lock<std::mutex>& lk) {
  if (gScheduled) return;
  gScheduled = true;
  lk.unlock();
  if (gTyped.NonBlockingCall() != napi_ok) {
    std::lock_guard<std::mutex> again(gQueueMu);
    gScheduled = false;  // environment gone: nobody to tell
  }
}

// Records wait up to this long to share one JS call (handoffs never wait): at hundreds of
// connections a second, a JS wake-up per open and per close competed for the cores with the
// loops that accept, and showed in the accept-to-connect tail.
constexpr int64_t kRecordWaitNs = 5000000;
constexpr size_t kRecordBatchMax = 256;
int gFlushFd = -1;         // timerfd in loop 0's epoll set; -1: deliver at once
bool gFlushArmed = false;  // under gQueueMu

void Publish(const Rec& r) {
  std::unique_lock<std::mutex> lk(gQueueMu);
  gRecs.push_back(r);
  if (gScheduled) return;  // the pending call takes it
  if (gFlushFd < 0 || gRecs.size() >= kRecordBatchMax) return Schedule(lk);
  if (gFlushArmed) return;
  gFlushArmed = true;
  itimerspec at{};
  at.it_value.tv_nsec = kRecordWaitNs;
  if (timerfd_settime(gFlushFd, 0, &at, nullptr) < 0) {
    gFlushArmed = false;
    Schedule(lk);
  }
}

// Loop 0, when the record timer fired.
void Flush() {
  uint64_t n;
  while (read(gFlushFd, &n, sizeof n) > 0) {
  }
  std::unique_lock<std::mutex> lk(gQueueMu);
  gFlushArmed = false;
  if (!gRecs.empty()) Schedule(lk);
}

void PublishHandoff(Handoff&& h) {
  std::unique_lock<std::mutex> lk(gQueueMu);
  gHandoffs.push_back(std::move(h));
  Schedule(lk);
}

// ---- listeners -----------------------------------------------------------------------------

struct Listener {
  uint32_t idx;
  int fd;
  ListenerKind kind;
  std::atomic<uint32_t> total{0};
  std::mutex mu;
  std::unordered_map<std::string, uint32_t> perClient;  // family byte + 16 address bytes
};

std::mutex gListenersMu;
std::unordered_map<uint32_t, std::shared_ptr<Listener>> gListeners;

std::string ClientKey(int family, const uint8_t* a) {
  std::string k(17, '\0');
  k[0] = char(family);
  memcpy(&k[1], a, 16);
  return k;
}

// Connections counted against the listener's limits until released.
void ReleaseSlot(Listener& l, const std::string& key) {
  l.total--;
  std::lock_guard<std::mutex> lk(l.mu);
  auto it = l.perClient.find(key);
  if (it != l.perClient.end() && --it->second == 0) l.perClient.erase(it);
}

void MptcpIdentity(int fd, int8_t& mptcp, uint32_t& token, uint8_t& subflows) {
  uint8_t info[96] = {};
  socklen_t len = sizeof info;
  if (getsockopt(fd, kSolMptcp, kMptcpInfo, info, &len) == 0 && len >= 16) {
    uint32_t flags;
    memcpy(&flags, info + 8, 4);
    if (!(flags & 1)) {
      mptcp = 1;
      memcpy(&token, info + 12, 4);
      uint8_t n = len > 80 && info[80] ? info[80] : uint8_t(info[0] + 1);
      if (n > subflows) subflows = n;
      return;
    }
  }
  if (mptcp == 1) return;  // at close: a connection that was MPTCP stays so
  int v = 0;
  len = sizeof v;
  mptcp = getsockopt(fd, IPPROTO_TCP, kTcpIsMptcp, &v, &len) == 0 ? int8_t(v == 1) : int8_t(-1);
}

void AddrOf(const sockaddr_storage& ss, int& family, uint8_t a[16], uint16_t& port) {
  memset(a, 0, 16);
  if (ss.ss_family == AF_INET) {
    auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
    family = 4;
    memcpy(a, &s4->sin_addr, 4);
    port = ntohs(s4->sin_port);
  } else {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    port = ntohs(s6->sin6_port);
    if (memcmp(&s6->sin6_addr, kMapped, 12) == 0) {  // a dual-stack listener's IPv4 client
      family = 4;
      memcpy(a, reinterpret_cast<const uint8_t*>(&s6->sin6_addr) + 12, 4);
    } else {
      family = 6;
      memcpy(a, &s6->sin6_addr, 16);
    }
  }
}

// ---- connections ---------------------------------------------------------------------------

struct Loop;
// Tags of the loop's own fds; a relayed pair's are the pair set's (kind kPairTagKind).
enum TagType : uint8_t { kTagListener = 1, kTagClient = 2, kTagUpstream = 3, kTagFlush = 4 };
struct Tag : splice_native::TagHead {
  Tag(TagType t, void* o) : TagHead{t}, obj(o) {}
  void* obj;
};

enum class State { Handshake, Connecting, Closing };

struct Conn {
  Loop* loop;
  std::shared_ptr<Listener> listener;
  std::string key;
  int fd = -1;
  int ufd = -1;
  State st = State::Handshake;
  Tag tc{kTagClient, nullptr}, tu{kTagUpstream, nullptr};
  // Handshake bytes; freed once the tunnel runs, so an idle tunnel costs no more than its record.
  std::unique_ptr<uint8_t[]> buf{new uint8_t[kBuf]};
  size_t len = 0;
  ParseOut po;
  bool greeted = false;
  int64_t deadline = 0;  // ms, CLOCK_MONOTONIC
  uint64_t written = 0;  // bytes the proxy itself wrote to the client (replies)
  splice_native::Progress progress;  // relayed bytes, live (read by Live())
  Rec rec{};
};

struct Cmd {
  enum Op { Add, Remove, CloseAll, CloseFds } op;
  std::shared_ptr<Listener> l;
  std::shared_ptr<std::atomic<int>> pending;
  std::vector<int> fds;  // CloseFds
};

std::mutex gAckMu;
std::condition_variable gAckCv;

std::mutex gRelayMu;
std::unordered_set<Conn*> gRelaying;

void OnRelayDone(void* ctx, uint64_t id, uint64_t up, uint64_t down, int end, int err);

struct Loop {
  int ep = -1;
  WakeQueue<Cmd> cmds;
  // The tunnels this loop set up, spliced here: no other thread is woken per tunnel.
  std::unique_ptr<splice_native::PairSet> pairs;
  std::unordered_map<uint32_t, std::pair<std::shared_ptr<Listener>, Tag*>> listeners;
  std::set<std::pair<int64_t, Conn*>> timers;
  std::unordered_set<Conn*> conns;

  void Run() {
    epoll_event evs[128];
    for (;;) {
      int timeout = pairs->Timeout();
      if (!timers.empty()) {
        int64_t wait = timers.begin()->first - MonoMs();
        wait = wait < 0 ? 0 : std::min<int64_t>(wait, 60000);
        if (timeout < 0 || wait < timeout) timeout = int(wait);
      }
      int n = epoll_wait(ep, evs, 128, timeout);
      for (int i = 0; i < n; i++) {
        auto* head = static_cast<splice_native::TagHead*>(evs[i].data.ptr);
        if (!head) {
          Commands();
          continue;
        }
        if (head->kind == splice_native::kPairTagKind) {
          pairs->OnEvent(head, evs[i].events);
          continue;
        }
        auto* tag = static_cast<Tag*>(head);
        if (tag->kind == kTagFlush) {
          Flush();
          continue;
        }
        if (tag->kind == kTagListener) {
          Accept(*static_cast<Listener*>(tag->obj));
          continue;
        }
        Conn* c = static_cast<Conn*>(tag->obj);
        if (!conns.count(c)) continue;  // ended earlier in this pass
        if (tag->kind == kTagUpstream) Connected(c);
        else if (c->st == State::Closing) Drain(c);
        else Readable(c);
      }
      pairs->Pass();
      Expire();
    }
  }

  void Commands() {
    for (Cmd& c : cmds.Take()) {
      if (c.op == Cmd::Add) {
        auto* tag = new Tag(kTagListener, c.l.get());
        epoll_event ev{};
        // Every loop waits on the one listening fd; EPOLLEXCLUSIVE wakes one of them per
        // connection instead of all (the thundering herd).
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.ptr = static_cast<splice_native::TagHead*>(tag);
        epoll_ctl(ep, EPOLL_CTL_ADD, c.l->fd, &ev);
        listeners[c.l->idx] = {c.l, tag};
      } else if (c.op == Cmd::Remove) {
        auto it = listeners.find(c.l->idx);
        if (it != listeners.end()) {
          epoll_ctl(ep, EPOLL_CTL_DEL, c.l->fd, nullptr);
          delete it->second.second;
          listeners.erase(it);
        }
      } else if (c.op == Cmd::CloseFds) {
        for (int fd : c.fds) close(fd);
      } else {
        std::vector<Conn*> all(conns.begin(), conns.end());
        for (Conn* x : all) Finish(x);
        pairs->AbortAll();
      }
      if (c.pending) {
        std::lock_guard<std::mutex> lk(gAckMu);
        if (--*c.pending == 0) gAckCv.notify_all();
      }
    }
  }

  void SetDeadline(Conn* c, int64_t at) {
    if (c->deadline) timers.erase({c->deadline, c});
    c->deadline = at;
    if (at) timers.insert({at, c});
  }

  void Expire() {
    int64_t now = MonoMs();
    while (!timers.empty() && timers.begin()->first <= now) {
      Conn* c = timers.begin()->second;
      timers.erase(timers.begin());
      c->deadline = 0;
      if (c->st == State::Closing) Finish(c);
      else if (c->st == State::Connecting) Refuse(c, CurrentTables()->codeConnectTimeout);
      else HandshakeTimeout(c);
    }
  }

  void Accept(Listener& l) {
    for (int k = 0; k < kAcceptBatch; k++) {
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      int fd = accept4(l.fd, reinterpret_cast<sockaddr*>(&ss), &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of fds: the listener stays readable and comes back
      auto t = CurrentTables();
      Rec r{};
      r.acceptedNs = uint64_t(MonoNs());
      r.startedAtMs = WallMs();
      r.listener = l.idx;
      r.nid = ++gNextId;
      r.code = -1;
      r.fd = -1;
      r.subflows = 1;
      int family;
      AddrOf(ss, family, r.clientAddr, r.clientPort);
      r.clientFamily = uint8_t(family);
      // limits.maxConnections: as net.Server's, the connection is closed unanswered.
      if (l.total.load() >= t->maxConnections) {
        close(fd);
        r.kind = kRecDrop;
        r.code = int16_t(t->codeLimit);
        Publish(r);
        continue;
      }
      l.total++;
      std::string key = ClientKey(family, r.clientAddr);
      uint32_t count;
      {
        std::lock_guard<std::mutex> lk(l.mu);
        count = ++l.perClient[key];
      }
      MptcpIdentity(fd, r.mptcp, r.token, r.subflows);
      if (count > t->maxPerClient) {
        close(fd);
        ReleaseSlot(l, key);
        r.kind = kRecClose;
        r.code = int16_t(t->codeLimit);
        r.closedNs = uint64_t(MonoNs());
        Publish(r);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto* c = new Conn();
      c->loop = this;
      c->fd = fd;
      c->key = key;
      c->rec = r;
      c->tc.obj = c->tu.obj = c;
      c->listener = listeners[l.idx].first;
      conns.insert(c);
      gActive++;
      // Authentication, parent proxies and denied clients are the TS path's.
      if (t->handOffAll || !Contains(t->clients, family, r.clientAddr)) {
        HandOff(c);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = static_cast<splice_native::TagHead*>(&c->tc);
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      SetDeadline(c, int64_t(r.acceptedNs / 1000000) + t->handshakeMs);
    }
  }

  static std::shared_ptr<Listener> FindListener(uint32_t idx) {
    std::lock_guard<std::mutex> lk(gListenersMu);
    auto it = gListeners.find(idx);
    return it == gListeners.end() ? nullptr : it->second;
  }

  // Leaves the loop's books (not the listener's: the slot goes with the connection).
  void Forget(Conn* c) {
    SetDeadline(c, 0);
    conns.erase(c);
    if (c->fd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
    if (c->ufd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->ufd, nullptr);
  }

  // The client fd goes to JS, which now owns it and the listener slot (released by JS).
  void HandOff(Conn* c) {
    Forget(c);
    if (c->ufd >= 0) close(c->ufd);
    Handoff h{c->fd, c->rec.listener, uint8_t(c->po.proto), c->greeted, c->rec.mptcp, c->rec.token, c->rec.subflows, c->rec.acceptedNs, c->key,
              std::string(reinterpret_cast<const char*>(c->buf.get()), c->len)};
    gActive--;
    delete c;
    PublishHandoff(std::move(h));
  }

  // Closes everything and reports the connection.
  void Finish(Conn* c) {
    Forget(c);
    if (c->fd >= 0) close(c->fd);
    if (c->ufd >= 0) close(c->ufd);
    c->rec.kind = kRecClose;
    c->rec.closedNs = uint64_t(MonoNs());
    c->rec.bytesUp = double(c->len);
    c->rec.bytesDown = double(c->written);
    if (c->listener) ReleaseSlot(*c->listener, c->key);
    gActive--;
    Publish(c->rec);
    delete c;
  }

  bool Send(Conn* c, const void* data, size_t n) {
    ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
    if (w > 0) c->written += uint64_t(w);
    return w == ssize_t(n);
  }

  void Readable(Conn* c) {
    if (c->st != State::Handshake) return;
    ListenerKind kind = c->listener ? c->listener->kind : ListenerKind::Http;
    // An HTTP listener's first bytes are only peeked: a request that is not CONNECT (a forward
    // request) goes to TS with nothing taken, so Node's server reads that socket natively, not
    // through put-back bytes parsed in JavaScript.
    bool peek = kind == ListenerKind::Http && c->len == 0;
    ssize_t n = recv(c->fd, c->buf.get() + c->len, kBuf - c->len, peek ? MSG_PEEK : 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // A client leaving mid-handshake is judged by the TS path, which sees the same EOF or error.
    if (n <= 0) return HandOff(c);
    auto t = CurrentTables();
    c->po = ParseHandshake(c->buf.get(), c->len + size_t(n), kind, t->parse);
    c->rec.proto = uint8_t(c->po.proto);
    if (peek) {
      if (c->po.verdict == Verdict::Handoff) return HandOff(c);
      // Take what was peeked: those bytes are queued, so this returns them all.
      n = recv(c->fd, c->buf.get(), size_t(n), 0);
      if (n <= 0) return HandOff(c);
    }
    c->len += size_t(n);
    if (c->po.verdict == Verdict::Handoff || (c->po.verdict == Verdict::NeedMore && c->len == kBuf)) return HandOff(c);
    if (c->po.proto == Proto::Socks5 && c->po.greetingLen > 0 && !c->greeted) {
      static const uint8_t kNoAuth[2] = {5, 0};
      c->greeted = true;
      if (!Send(c, kNoAuth, 2)) return Finish(c);
    }
    if (c->po.verdict == Verdict::Connect) Dial(c, *t);
  }

  void SetDest(Conn* c) {
    snprintf(c->rec.dest, sizeof c->rec.dest, "%s", c->po.host);
    c->rec.destPort = c->po.port;
  }

  void Dial(Conn* c, const Tables& t) {
    // A reload since accept may have turned authentication or parents on, or the client away:
    // those are the TS path's (a SOCKS5 greeting already answered included).
    if (t.handOffAll || !Contains(t.clients, c->rec.clientFamily, c->rec.clientAddr)) return HandOff(c);
    SetDest(c);
    const ParseOut& p = c->po;
    if (!t.ports.empty() && !t.ports[p.port]) return Refuse(c, t.codePortDenied);
    if (!Contains(t.opened, p.family, p.addr) && Contains(t.denied, p.family, p.addr)) return Refuse(c, t.codeDestDenied);
    sockaddr_storage ss{};
    socklen_t sl;
    if (p.family == 4) {
      auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
      s4->sin_family = AF_INET;
      s4->sin_port = htons(p.port);
      memcpy(&s4->sin_addr, p.addr, 4);
      sl = sizeof *s4;
    } else {
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(p.port);
      memcpy(&s6->sin6_addr, p.addr, 16);
      sl = sizeof *s6;
    }
    int af = p.family == 4 ? AF_INET : AF_INET6;
    int ufd = -1;
    // upstream.mptcp: MPTCP first (the kernel falls back to TCP when the server has none).
    if (t.upstreamMptcp) ufd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpprotoMptcp);
    if (ufd < 0) ufd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ufd < 0) return Refuse(c, t.codeInternal);
    c->ufd = ufd;
    int one = 1;
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // The client is not read while connecting: what it pipelines waits in its socket.
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
    c->st = State::Connecting;
    if (connect(ufd, reinterpret_cast<sockaddr*>(&ss), sl) == 0) return Connected(c);
    if (errno != EINPROGRESS) {
      c->rec.err = errno;
      return Refuse(c, CodeOfErrno(t, errno));
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.ptr = static_cast<splice_native::TagHead*>(&c->tu);
    epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev);
    SetDeadline(c, MonoMs() + t.connectTimeoutMs);
  }

  static int CodeOfErrno(const Tables& t, int err) {
    auto it = t.errnoCode.find(err);
    return it == t.errnoCode.end() ? t.codeInternal : it->second;
  }

  void Connected(Conn* c) {
    auto t = CurrentTables();
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
    if (err) {
      c->rec.err = err;
      return Refuse(c, CodeOfErrno(*t, err));
    }
    c->rec.connectedNs = uint64_t(MonoNs());
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    getsockname(c->ufd, reinterpret_cast<sockaddr*>(&local), &ll);
    getpeername(c->ufd, reinterpret_cast<sockaddr*>(&peer), &pl);
    if (peer.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, c->rec.upstream, sizeof c->rec.upstream);
    else inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, c->rec.upstream, sizeof c->rec.upstream);
    int lf;
    uint8_t la[16];
    uint16_t lp;
    AddrOf(local, lf, la, lp);
    // The success reply names the bound address, as the TS front ends do.
    uint8_t reply[32];
    size_t rn = 0;
    if (c->po.proto == Proto::Socks5) {
      reply[0] = 5, reply[1] = 0, reply[2] = 0, reply[3] = lf == 4 ? 1 : 4;
      size_t al = lf == 4 ? 4 : 16;
      memcpy(reply + 4, la, al);
      reply[4 + al] = uint8_t(lp >> 8), reply[5 + al] = uint8_t(lp);
      rn = 6 + al;
    } else if (c->po.proto == Proto::Socks4) {
      memset(reply, 0, 8);
      reply[1] = 0x5a;
      reply[2] = uint8_t(lp >> 8), reply[3] = uint8_t(lp);
      if (lf == 4) memcpy(reply + 4, la, 4);
      rn = 8;
    }
    static const char kEstablished[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    bool ok = rn ? Send(c, reply, rn) : Send(c, kEstablished, sizeof kEstablished - 1);
    // Bytes the client sent behind its handshake go first (a fresh socket takes a few KiB).
    size_t rest = c->len - c->po.consumed;
    if (ok && rest > 0) ok = send(c->ufd, c->buf.get() + c->po.consumed, rest, MSG_NOSIGNAL) == ssize_t(rest);
    if (!ok) return Finish(c);
    c->buf.reset();
    MptcpIdentity(c->fd, c->rec.mptcp, c->rec.token, c->rec.subflows);
    Forget(c);
    c->rec.kind = kRecOpen;
    c->rec.fd = c->fd;
    Publish(c->rec);
    {
      std::lock_guard<std::mutex> lk(gRelayMu);
      gRelaying.insert(c);
    }
    pairs->Add({splice_native::NextPairId(), c->fd, c->ufd, t->idleMs, t->pipeSize, OnRelayDone, c, &c->progress});
  }

  // A refusal in the protocol's words, then the TS path's graceful close.
  void Refuse(Conn* c, int code) {
    auto t = CurrentTables();
    c->rec.code = int16_t(code);
    if (c->ufd >= 0) {
      epoll_ctl(ep, EPOLL_CTL_DEL, c->ufd, nullptr);
      close(c->ufd);
      c->ufd = -1;
    }
    const Refusal& r = t->refusals[size_t(code)];
    int64_t grace = kSocksGraceMs;
    if (c->po.proto == Proto::Connect) {
      Send(c, r.http.data(), r.http.size());
      grace = kHttpGraceMs;
    } else if (c->po.proto == Proto::Socks5) {
      uint8_t rep[10] = {5, r.socks5, 0, 1, 0, 0, 0, 0, 0, 0};
      if (c->greeted) Send(c, rep, 10);
      else Send(c, "\x05\xff", 2);
    } else if (c->po.proto == Proto::Socks4) {
      uint8_t rep[8] = {0, r.socks4, 0, 0, 0, 0, 0, 0};
      Send(c, rep, 8);
    }
    CloseGracefully(c, grace);
  }

  void HandshakeTimeout(Conn* c) {
    auto t = CurrentTables();
    ListenerKind kind = c->listener ? c->listener->kind : ListenerKind::Http;
    if (c->len == 0 && kind == ListenerKind::Mixed) {  // as src/proxy/mixed.ts: no answer at all
      c->rec.code = int16_t(t->codeHandshakeTimeout);
      return Finish(c);
    }
    // An HTTP port answers a silent client too (408), as the HTTP front end's head deadline does.
    if (c->len == 0 && kind == ListenerKind::Http) c->po.proto = Proto::Connect;
    Refuse(c, t->codeHandshakeTimeout);
  }

  // FIN now, close when the client's FIN comes or after the grace.
  void CloseGracefully(Conn* c, int64_t graceMs) {
    shutdown(c->fd, SHUT_WR);
    c->st = State::Closing;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = static_cast<splice_native::TagHead*>(&c->tc);
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    SetDeadline(c, MonoMs() + graceMs);
  }

  void Drain(Conn* c) {
    uint8_t sink[4096];
    for (;;) {
      ssize_t n = read(c->fd, sink, sizeof sink);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      return Finish(c);
    }
  }
};

// On the loop's thread, when the pair set ended the relay: both fds are ours again. The client fd stays open until JS has the close
// record (Deliver closes it); what the client sees of the end happens now.
void OnRelayDone(void* ctx, uint64_t, uint64_t up, uint64_t down, int end, int err) {
  auto* c = static_cast<Conn*>(ctx);
  {
    std::lock_guard<std::mutex> lk(gRelayMu);
    gRelaying.erase(c);
  }
  MptcpIdentity(c->fd, c->rec.mptcp, c->rec.token, c->rec.subflows);
  // A reset is passed on as a reset (as src/relay/splice-relay.ts does).
  linger rst{1, 0};
  if (end == splice_native::kClientError) setsockopt(c->ufd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
  if (end == splice_native::kUpstreamError) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
  // The client's FIN now, not when the fd closes (an RST waits for the close: a few ms).
  else shutdown(c->fd, SHUT_RDWR);
  close(c->ufd);
  if (c->listener) ReleaseSlot(*c->listener, c->key);
  Rec& r = c->rec;
  r.kind = kRecClose;
  r.closedNs = uint64_t(MonoNs());
  r.bytesUp = double(c->len) + double(up);
  r.bytesDown = double(c->written) + double(down);
  r.end = uint8_t(end + 1);
  r.err = err;
  gActive--;
  Publish(r);
  delete c;
}

// ---- threads -------------------------------------------------------------------------------

std::mutex gLoopsMu;
std::vector<Loop*> gLoops;

int StartLoops(size_t n) {
  std::lock_guard<std::mutex> lk(gLoopsMu);
  while (gLoops.size() < n) {
    auto* l = new Loop();
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0) return errno;
    if (int e = l->cmds.Open()) return e;
    l->pairs.reset(new splice_native::PairSet(l->ep));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->cmds.fd(), &ev);
    if (gLoops.empty()) {
      // The record timer (see Publish); without it records go out at once.
      static Tag flushTag(kTagFlush, nullptr);
      int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
      ev.data.ptr = static_cast<splice_native::TagHead*>(&flushTag);
      if (fd >= 0 && epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) == 0) {
        std::lock_guard<std::mutex> q(gQueueMu);
        gFlushFd = fd;
      } else if (fd >= 0) {
        close(fd);
      }
    }
    std::thread([l] {
      pthread_setname_np(pthread_self(), "mpx-fastpath");  // as top -H and /proc/PID/task name it
      l->Run();
    }).detach();  // loops live as long as the process
    gLoops.push_back(l);
  }
  return 0;
}

// Posts a command to every loop and waits until each has run it.
void PostAll(Cmd::Op op, const std::shared_ptr<Listener>& l) {
  std::vector<Loop*> loops;
  {
    std::lock_guard<std::mutex> lk(gLoopsMu);
    loops = gLoops;
  }
  auto pending = std::make_shared<std::atomic<int>>(int(loops.size()));
  for (Loop* lp : loops) lp->cmds.Post(Cmd{op, l, pending, {}});
  std::unique_lock<std::mutex> lk(gAckMu);
  gAckCv.wait(lk, [&] { return pending->load() == 0; });
}

// ---- N-API ---------------------------------------------------------------------------------

Napi::Value Fail(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

std::vector<Cidr> CidrsOf(const Napi::Value& v) {
  std::vector<Cidr> out;
  if (!v.IsBuffer()) return out;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  for (size_t i = 0; i + 18 <= b.Length(); i += 18) {
    Cidr c{};
    c.family = b.Data()[i];
    c.bits = b.Data()[i + 1];
    memcpy(c.addr, b.Data() + i + 2, 16);
    out.push_back(c);
  }
  return out;
}

int ErrnoByName(const std::string& name) {
  for (int e = 1; e < 200; e++) {
    const char* n = strerrorname_np(e);
    if (n && name == n) return e;
  }
  return 0;
}

// configure(tables): see src/fastpath/tables.ts for the shape.
Napi::Value Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Fail(env, "configure(tables)");
  Napi::Object o = info[0].As<Napi::Object>();
  auto t = std::make_shared<Tables>();
  auto num = [&](const char* k) { return o.Get(k).As<Napi::Number>().Int64Value(); };
  t->clients = CidrsOf(o.Get("clients"));
  t->denied = CidrsOf(o.Get("denied"));
  t->opened = CidrsOf(o.Get("opened"));
  Napi::Array ports = o.Get("ports").As<Napi::Array>();
  if (ports.Length() > 0) {
    t->ports.assign(65536, false);
    for (uint32_t i = 0; i < ports.Length(); i++) t->ports[size_t(ports.Get(i).As<Napi::Number>().Uint32Value() & 0xffff)] = true;
  }
  t->handOffAll = o.Get("handOffAll").ToBoolean();
  t->upstreamMptcp = o.Get("upstreamMptcp").ToBoolean();
  t->maxConnections = uint32_t(num("maxConnections"));
  t->maxPerClient = uint32_t(num("maxPerClient"));
  t->handshakeMs = num("handshakeMs");
  t->connectTimeoutMs = num("connectTimeoutMs");
  t->idleMs = num("idleMs");
  t->pipeSize = size_t(num("pipeSize"));
  t->parse.maxHeadBytes = size_t(std::min<int64_t>(num("maxHeadBytes"), int64_t(kBuf) - 1));
  t->parse.maxHeaderLines = size_t(num("maxHeaderLines"));
  Napi::Array refusals = o.Get("refusals").As<Napi::Array>();
  for (uint32_t i = 0; i < refusals.Length(); i++) {
    Napi::Object r = refusals.Get(i).As<Napi::Object>();
    Refusal x;
    auto http = r.Get("http").As<Napi::Buffer<char>>();
    x.http.assign(http.Data(), http.Length());
    x.socks5 = uint8_t(r.Get("socks5").As<Napi::Number>().Uint32Value());
    x.socks4 = uint8_t(r.Get("socks4").As<Napi::Number>().Uint32Value());
    t->refusals.push_back(std::move(x));
  }
  Napi::Object codes = o.Get("codes").As<Napi::Object>();
  auto code = [&](const char* k) {
    int v = codes.Get(k).As<Napi::Number>().Int32Value();
    return v >= 0 && size_t(v) < t->refusals.size() ? v : 0;
  };
  t->codeHandshakeTimeout = code("handshakeTimeout");
  t->codeDestDenied = code("destDenied");
  t->codePortDenied = code("portDenied");
  t->codeConnectTimeout = code("connectTimeout");
  t->codeLimit = code("limitReached");
  t->codeInternal = code("internal");
  Napi::Object errnos = o.Get("errnos").As<Napi::Object>();
  Napi::Array names = errnos.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).As<Napi::String>();
    int e = ErrnoByName(name);
    int v = errnos.Get(name).As<Napi::Number>().Int32Value();
    if (e && v >= 0 && size_t(v) < t->refusals.size()) t->errnoCode[e] = v;
  }
  std::shared_ptr<const Tables> next = t;
  std::atomic_store(&gTables, next);
  return env.Undefined();
}

// The batch callback: (records: Buffer, handoffs: object[]).
// Everything queued so far to cb: from the thread-safe call, or from flush() (`scheduled` false:
// a call still pending then finds the queue empty).
void DeliverQueued(Napi::Env env, Napi::Function cb, bool scheduled) {
  std::vector<Rec> recs;
  std::vector<Handoff> hs;
  {
    std::lock_guard<std::mutex> lk(gQueueMu);
    recs.swap(gRecs);
    hs.swap(gHandoffs);
    if (scheduled) gScheduled = false;
  }
  // Relayed clients' fds JS may have used until it took their close records (one post per batch).
  std::vector<int> closing;
  for (const Rec& r : recs)
    if (r.kind == kRecClose && r.fd >= 0) closing.push_back(r.fd);
  if (env == nullptr || cb == nullptr) {
    for (Handoff& h : hs) close(h.fd);
    for (int fd : closing) close(fd);
    return;
  }
  Napi::Buffer<uint8_t> rb = Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(recs.data()), recs.size() * sizeof(Rec));
  Napi::Array ha = Napi::Array::New(env, hs.size());
  for (size_t i = 0; i < hs.size(); i++) {
    Handoff& h = hs[i];
    Napi::Object x = Napi::Object::New(env);
    x.Set("fd", h.fd);
    x.Set("listener", h.listener);
    x.Set("proto", h.proto);
    x.Set("greeted", h.greeted);
    x.Set("mptcp", h.mptcp);
    x.Set("token", h.token);
    x.Set("subflows", h.subflows);
    x.Set("acceptedNs", Napi::BigInt::New(env, h.acceptedNs));
    x.Set("key", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(h.key.data()), h.key.size()));
    x.Set("head", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(h.head.data()), h.head.size()));
    ha[i] = x;
  }
  cb.Call({rb, ha});
  if (closing.empty()) return;
  Loop* loop;
  {
    std::lock_guard<std::mutex> lk(gLoopsMu);
    loop = gLoops.empty() ? nullptr : gLoops[size_t(closing.front()) % gLoops.size()];
  }
  if (!loop) {
    for (int fd : closing) close(fd);
    return;
  }
  Cmd cmd{Cmd::CloseFds, nullptr, nullptr, {}};
  cmd.fds = std::move(closing);
  loop->cmds.Post(std::move(cmd));
}

void Deliver(Napi::Env env, Napi::Function cb, std::nullptr_t*, std::nullptr_t*) { DeliverQueued(env, cb, true); }

Napi::FunctionReference gDeliverRef;

// flush(): what is queued goes to the deliver callback now (at stop: records must not wait for a
// loop turn the process may not have).
Napi::Value FlushNow(const Napi::CallbackInfo& info) {
  if (!gDeliverRef.IsEmpty()) DeliverQueued(info.Env(), gDeliverRef.Value(), false);
  return info.Env().Undefined();
}

int gRefs = 0;

// init(deliver, threads): once per process.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsNumber()) return Fail(env, "fastPathInit(deliver, threads)");
  if (gTsfnSet) return Fail(env, "fast path already initialised");
  gTyped = Tsfn::New(env, info[0].As<Napi::Function>(), "mptcp-fast-path", 0, 1);
  gDeliverRef = Napi::Persistent(info[0].As<Napi::Function>());
  gTyped.Unref(env);
  gTsfnSet = true;
  if (int e = StartLoops(std::max<size_t>(1, info[1].As<Napi::Number>().Uint32Value()))) return Fail(env, std::string("fast path threads: ") + strerror(e));
  return env.Undefined();
}

Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!gTsfnSet || !CurrentTables()) return Fail(env, "fastPathInit and fastPathConfigure first");
  if (info.Length() < 3) return Fail(env, "fastPathAttach(listenerId, fd, kind)");
  auto l = std::make_shared<Listener>();
  l->idx = info[0].As<Napi::Number>().Uint32Value();
  l->fd = info[1].As<Napi::Number>().Int32Value();
  l->kind = ListenerKind(info[2].As<Napi::Number>().Uint32Value());
  // A passed socket (socket activation, cluster workers) may be blocking: a loop's accept batch
  // would then block in accept4() once the queue is empty, and with it every connection it holds.
  int flags = fcntl(l->fd, F_GETFL);
  if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) < 0) return Fail(env, std::string("fastPathAttach: ") + strerror(errno));
  {
    std::lock_guard<std::mutex> lk(gListenersMu);
    gListeners[l->idx] = l;
  }
  if (gRefs++ == 0) gTyped.Ref(env);  // like a net.Server, a listener keeps the process alive
  PostAll(Cmd::Add, l);
  return env.Undefined();
}

// detach(listenerId): returns once no loop accepts on its fd; the caller may then close it.
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t idx = info[0].As<Napi::Number>().Uint32Value();
  std::shared_ptr<Listener> l;
  {
    std::lock_guard<std::mutex> lk(gListenersMu);
    auto it = gListeners.find(idx);
    if (it == gListeners.end()) return env.Undefined();
    l = it->second;
    gListeners.erase(it);
  }
  PostAll(Cmd::Remove, l);
  if (--gRefs == 0) gTyped.Unref(env);
  return env.Undefined();
}

// release(listenerId, clientKey): a handed-off connection closed on the TS path.
Napi::Value Release(const Napi::CallbackInfo& info) {
  uint32_t idx = info[0].As<Napi::Number>().Uint32Value();
  auto key = info[1].As<Napi::Buffer<char>>();
  std::shared_ptr<Listener> l = Loop::FindListener(idx);
  if (l && key.Length() == 17) ReleaseSlot(*l, std::string(key.Data(), 17));
  return info.Env().Undefined();
}

// closeAll(): end every connection native holds (after a drain), relays included (each loop
// aborts its own).
Napi::Value CloseAll(const Napi::CallbackInfo& info) {
  PostAll(Cmd::CloseAll, nullptr);
  return info.Env().Undefined();
}

// live(): the bytes of every running native relay, read now: 24 bytes each (native id u64,
// bytes from the client f64, bytes to the client f64), one call per status read or scrape.
Napi::Value Live(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> out;
  {
    std::lock_guard<std::mutex> lk(gRelayMu);
    out.resize(gRelaying.size() * 24);
    uint8_t* at = out.data();
    for (Conn* c : gRelaying) {
      double up = double(c->len) + double(c->progress.bytes[0].load(std::memory_order_relaxed));
      double down = double(c->written) + double(c->progress.bytes[1].load(std::memory_order_relaxed));
      memcpy(at, &c->rec.nid, 8);
      memcpy(at + 8, &up, 8);
      memcpy(at + 16, &down, 8);
      at += 24;
    }
  }
  return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), out.size());
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", gActive.load());
  std::lock_guard<std::mutex> lk(gLoopsMu);
  o.Set("threads", double(gLoops.size()));
  return o;
}

const char* ProtoName(Proto p) {
  switch (p) {
    case Proto::Connect: return "connect";
    case Proto::Socks4: return "socks4";
    case Proto::Socks5: return "socks5";
    default: return "unknown";
  }
}

// parse(bytes, kind, maxHeadBytes, maxHeaderLines): the pure parser, for tests.
Napi::Value Parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsBuffer()) return Fail(env, "fastPathParse(bytes, kind, maxHeadBytes, maxHeaderLines)");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  ParseLimits lim{size_t(info[2].As<Napi::Number>().Int64Value()), size_t(info[3].As<Napi::Number>().Int64Value())};
  ParseOut p = ParseHandshake(b.Data(), b.Length(), ListenerKind(info[1].As<Napi::Number>().Uint32Value()), lim);
  Napi::Object o = Napi::Object::New(env);
  o.Set("verdict", p.verdict == Verdict::Connect ? "connect" : p.verdict == Verdict::Handoff ? "handoff" : "more");
  o.Set("proto", ProtoName(p.proto));
  o.Set("greetingLen", double(p.greetingLen));
  if (p.verdict == Verdict::Connect) {
    o.Set("consumed", double(p.consumed));
    o.Set("host", p.host);
    o.Set("port", p.port);
    char a[64];
    inet_ntop(p.family == 4 ? AF_INET : AF_INET6, p.addr, a, sizeof a);
    o.Set("address", a);
  }
  if (p.verdict == Verdict::Handoff) o.Set("reason", p.reason);
  return o;
}

}  // namespace
}  // namespace fastpath

void FastPathRegister(Napi::Env env, Napi::Object exports) {
  using namespace fastpath;
  exports.Set("fastPathInit", Napi::Function::New(env, Init, "fastPathInit"));
  exports.Set("fastPathConfigure", Napi::Function::New(env, Configure, "fastPathConfigure"));
  exports.Set("fastPathAttach", Napi::Function::New(env, Attach, "fastPathAttach"));
  exports.Set("fastPathDetach", Napi::Function::New(env, Detach, "fastPathDetach"));
  exports.Set("fastPathRelease", Napi::Function::New(env, Release, "fastPathRelease"));
  exports.Set("fastPathCloseAll", Napi::Function::New(env, CloseAll, "fastPathCloseAll"));
  exports.Set("fastPathStats", Napi::Function::New(env, Stats, "fastPathStats"));
  exports.Set("fastPathLive", Napi::Function::New(env, Live, "fastPathLive"));
  exports.Set("fastPathFlush", Napi::Function::New(env, FlushNow, "fastPathFlush"));
  exports.Set("fastPathParse", Napi::Function::New(env, Parse, "fastPathParse"));
}
