// See splice_pairs.h.
#include "splice_pairs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace splice_native {

namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Sides of a pair: 0 = client, 1 = upstream.
constexpr int kClient = 0;
constexpr int kUpstream = 1;

// Idle pipes kept per size for reuse; more are closed when returned.
constexpr size_t kPoolMax = 32;
// How long a direction that could not get a pipe waits before trying pipe2() again.
constexpr int kPipeRetryMs = 50;
// Per pump call: bound the work one busy pair gets before others are served.
constexpr size_t kPumpBudgetBytes = 8u << 20;

// A pipe of up to `want` bytes; the kernel may refuse large sizes (pipe-max-size, per-user
// limits), so fall back to smaller ones and finally to the default. Returns 0 or an errno.
int MakePipe(Pipe& p, size_t want) {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return errno;
  p.r = fds[0];
  p.w = fds[1];
  for (size_t size = want; size >= 65536; size /= 2) {
    if (fcntl(p.w, F_SETPIPE_SZ, int(size)) >= 0) break;
  }
  int cap = fcntl(p.w, F_GETPIPE_SZ);
  p.capacity = cap > 0 ? size_t(cap) : 65536;
  return 0;
}

void ClosePipe(Pipe& p) {
  if (p.r >= 0) close(p.r);
  if (p.w >= 0) close(p.w);
  p = Pipe{};
}

bool IsMptcp(int fd) {
  int proto = 0;
  socklen_t len = sizeof proto;
  return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_MPTCP;
}

int SocketError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
  return err;
}

std::atomic<uint64_t> gLastId{0};

}  // namespace

uint64_t NextPairId() { return ++gLastId; }

// epoll_event.data.ptr points at one of these, so an event says which socket it is about.
struct SideTag : TagHead {
  Pair* pair;
  int side;
};

struct Direction {
  int from;  // side index read from
  int to;    // side index written to
  Pipe pipe; // r < 0: no pipe held
  size_t inPipe = 0;   // bytes read from `from` not yet written to `to`
  bool eof = false;    // `from` sent FIN
  bool shut = false;   // FIN passed on to `to`
  uint64_t bytes = 0;  // written to `to`
};

struct Pair {
  PairSpec spec;
  SideTag tag[2];
  int fd[2];  // client and upstream fds, the caller's
  // Edge-triggered readiness: set by an event, cleared by EAGAIN or a short read, so a stalled
  // socket costs no syscall until its next edge. Nothing is known before the first events,
  // which EPOLL_CTL_ADD queues for what is ready already.
  bool canRead[2] = {false, false};
  bool canWrite[2] = {false, false};
  // The peer's FIN (or an error) was signalled: read until EOF, as no further edge will come.
  bool hangup[2] = {false, false};
  bool mptcp[2] = {false, false};  // reads sized by SIOCINQ (see splice_pairs.h)
  Direction dir[2];  // [0] client → upstream, [1] upstream → client
  int64_t lastActivity;
  bool dead = false;
  bool queuedReady = false;
  bool waitingPipe = false;
};

int PipePool::Take(size_t want, Pipe& out) {
  auto& free = free_[want];
  if (!free.empty()) {
    out = free.back();
    free.pop_back();
  } else if (int err = MakePipe(out, want)) {
    return err;
  } else {
    created_++;
  }
  inUse_++;
  return 0;
}

void PipePool::Clear() {
  for (auto& kv : free_) {
    for (Pipe& p : kv.second) ClosePipe(p);
    created_ -= kv.second.size();
    kv.second.clear();
  }
}

void PipePool::Give(size_t want, Pipe& p, bool empty) {
  inUse_--;
  auto& free = free_[want];
  if (empty && free.size() < kPoolMax) free.push_back(p);
  else {
    ClosePipe(p);
    created_--;
  }
  p = Pipe{};
}

void PairSet::Add(const PairSpec& spec) {
  auto* p = new Pair();
  p->spec = spec;
  p->fd[kClient] = spec.clientFd;
  p->fd[kUpstream] = spec.upstreamFd;
  for (int s = 0; s < 2; s++) {
    p->tag[s].kind = kPairTagKind;
    p->tag[s].pair = p;
    p->tag[s].side = s;
  }
  p->dir[0].from = kClient;
  p->dir[0].to = kUpstream;
  p->dir[1].from = kUpstream;
  p->dir[1].to = kClient;
  pairs_[spec.id] = p;
  p->lastActivity = NowMs();
  for (int s = 0; s < 2; s++) p->mptcp[s] = IsMptcp(p->fd[s]);
  if (spec.idleMs > 0) nextIdleCheck_ = std::min(nextIdleCheck_, p->lastActivity + spec.idleMs);
  for (int s = 0; s < 2; s++) {
    epoll_event ev{};
    // Edge-triggered: Pump always runs until EAGAIN (or a full pipe facing a blocked writer),
    // so every stall is ended by a later edge on the blocking socket.
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = static_cast<TagHead*>(&p->tag[s]);
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, p->fd[s], &ev) < 0) {
      Finish(p, s == kClient ? kClientError : kUpstreamError, errno);
      return;
    }
  }
}

void PairSet::OnEvent(TagHead* head, uint32_t e) {
  auto* tag = static_cast<SideTag*>(head);
  Pair* p = tag->pair;
  if (p->dead) return;
  if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) p->canRead[tag->side] = true;
  if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) p->hangup[tag->side] = true;
  if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) p->canWrite[tag->side] = true;
  if (e & EPOLLERR) {
    int err = SocketError(p->fd[tag->side]);
    if (err) {
      Finish(p, tag->side == kClient ? kClientError : kUpstreamError, err);
      return;
    }
  }
  Pump(p);
}

void PairSet::Pass() {
  RetryPipeWaiters();
  std::vector<Pair*> again;
  again.swap(ready_);
  for (Pair* p : again) {
    p->queuedReady = false;
    if (!p->dead) Pump(p);
  }
  CheckIdle();
  // A pair that ended after being queued must not outlive its memory in ready_.
  ready_.erase(std::remove_if(ready_.begin(), ready_.end(), [](Pair* p) { return p->dead; }), ready_.end());
  // Events of the pass that just ended may have pointed at these; the next epoll_wait cannot.
  for (Pair* p : graveyard_) delete p;
  graveyard_.clear();
}

// How much one splice from `fd` may ask for: the pipe's free space, and for MPTCP no more than
// the socket holds (at least a page, which also serves to see EOF or EAGAIN). `held`: what the
// socket held, -1 when not asked.
static size_t ReadLength(Pair* p, int side, size_t room, int& held) {
  held = -1;
  if (!p->mptcp[side]) return room;
  if (ioctl(p->fd[side], SIOCINQ, &held) < 0) {
    held = -1;
    return room;
  }
  return std::min(room, std::max<size_t>(size_t(held), 4096));
}

// Moves what it can in both directions; ends the pair on error or when both are finished.
void PairSet::Pump(Pair* p) {
  size_t budget = kPumpBudgetBytes;
  bool progress = true;
  while (progress && budget > 0) {
    progress = false;
    for (Direction& d : p->dir) {
      int r = Step(p, d, budget);
      if (r < 0) return;  // pair finished
      if (r > 0) progress = true;
    }
  }
  if (p->dir[0].shut && p->dir[1].shut) {
    Finish(p, kDone, 0);
    return;
  }
  if (budget == 0 && !p->queuedReady) {
    // Edge-triggered: no new event will come for data already queued, so come back to it.
    p->queuedReady = true;
    ready_.push_back(p);
  }
}

// A pipe for `d`, taken from the pool. False when none can be had now: the pair then waits
// (its socket's readiness is kept) and is pumped again once a pipe is back or after a while.
bool PairSet::Acquire(Pair* p, Direction& d) {
  if (d.pipe.r >= 0) return true;
  if (pool_.Take(p->spec.pipeSize, d.pipe) == 0) return true;
  if (!p->waitingPipe) {
    p->waitingPipe = true;
    pipeWaiters_.push_back(p);
  }
  return false;
}

void PairSet::Release(Pair* p, Direction& d) {
  if (d.pipe.r < 0) return;
  pool_.Give(p->spec.pipeSize, d.pipe, d.inPipe == 0);
  d.inPipe = 0;
  pipeReturned_ = true;
}

// One read and one write on a direction. Returns 1 on progress, 0 when stalled, -1 if the
// pair was finished.
int PairSet::Step(Pair* p, Direction& d, size_t& budget) {
  bool progress = false;
  if (!d.eof && p->canRead[d.from] && (d.pipe.r < 0 || d.inPipe < d.pipe.capacity) && Acquire(p, d)) {
    int held;
    size_t want = ReadLength(p, d.from, d.pipe.capacity - d.inPipe, held);
    ssize_t n = splice(p->fd[d.from], nullptr, d.pipe.w, nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe += size_t(n);
      progress = true;
      // Everything the socket held is read: bytes arriving later bring a new edge (epoll queues
      // the socket again on every arrival after epoll_wait took it), so the read that would
      // only say EAGAIN is skipped. A FIN already signalled brings none: read on to see EOF.
      // (A short read alone proves nothing: a pipe out of slots cuts a read short too.)
      if (held >= 0 && n >= held && !p->hangup[d.from]) p->canRead[d.from] = false;
    } else if (n == 0) {
      d.eof = true;
      progress = true;
    } else if (errno == EAGAIN) {
      // With bytes in the pipe, EAGAIN may mean "pipe out of slots", not "socket empty":
      // keep reading after the write below makes room.
      if (d.inPipe == 0) p->canRead[d.from] = false;
    } else if (errno != EINTR) {
      return Fail(p, d.from, errno);
    }
  }
  if (d.inPipe > 0 && p->canWrite[d.to]) {
    ssize_t n = splice(d.pipe.r, nullptr, p->fd[d.to], nullptr, d.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe -= size_t(n);
      d.bytes += uint64_t(n);
      if (p->spec.progress) p->spec.progress->bytes[&d - p->dir].store(d.bytes, std::memory_order_relaxed);
      budget = budget > size_t(n) ? budget - size_t(n) : 0;
      p->lastActivity = NowMs();
      progress = true;
    } else if (n < 0 && errno == EAGAIN) {
      p->canWrite[d.to] = false;
    } else if (n < 0 && errno != EINTR) {
      return Fail(p, d.to, errno);
    }
  }
  // Empty again: the pipe goes back to the pool until the socket has more.
  if (d.inPipe == 0) Release(p, d);
  if (d.eof && d.inPipe == 0 && !d.shut) {
    if (shutdown(p->fd[d.to], SHUT_WR) < 0 && errno != ENOTCONN) return Fail(p, d.to, errno);
    d.shut = true;
    progress = true;
  }
  return progress ? 1 : 0;
}

// Pairs that waited for a pipe get another go when one came back, or every kPipeRetryMs.
void PairSet::RetryPipeWaiters() {
  if (pipeWaiters_.empty()) return;
  int64_t now = NowMs();
  if (!pipeReturned_ && now < pipeRetryAt_) return;
  pipeReturned_ = false;
  pipeRetryAt_ = now + kPipeRetryMs;
  std::deque<Pair*> waiting;
  waiting.swap(pipeWaiters_);
  for (Pair* p : waiting) {
    p->waitingPipe = false;
    if (!p->dead) Pump(p);
  }
}

int PairSet::Fail(Pair* p, int side, int err) {
  Finish(p, side == kClient ? kClientError : kUpstreamError, err);
  return -1;
}

// Ends a pair: out of the epoll set, pipes back (bytes still in one are dropped with it), and
// reported. The fds stay open: they are the caller's.
void PairSet::Finish(Pair* p, EndReason end, int err) {
  for (int s = 0; s < 2; s++) epoll_ctl(ep_, EPOLL_CTL_DEL, p->fd[s], nullptr);  // harmless if never added
  for (Direction& d : p->dir) Release(p, d);
  p->dead = true;
  if (p->waitingPipe) pipeWaiters_.erase(std::remove(pipeWaiters_.begin(), pipeWaiters_.end(), p), pipeWaiters_.end());
  pairs_.erase(p->spec.id);
  // An idle set holds no pipes: each fast path loop has its own pool, and pipes parked in a loop
  // that may not serve another tunnel for long would only look like a leak.
  if (pairs_.empty()) pool_.Clear();
  graveyard_.push_back(p);  // events of this pass may still point at it
  p->spec.done(p->spec.ctx, p->spec.id, p->dir[0].bytes, p->dir[1].bytes, int(end), err);
}

void PairSet::Abort(uint64_t id) {
  auto it = pairs_.find(id);
  if (it != pairs_.end()) Finish(it->second, kClientError, ECANCELED);
}

void PairSet::AbortAll() {
  std::vector<Pair*> all;
  for (auto& kv : pairs_) all.push_back(kv.second);
  for (Pair* p : all) Finish(p, kClientError, ECANCELED);
}

int PairSet::Timeout() const {
  if (!ready_.empty()) return 0;
  int64_t at = nextIdleCheck_;
  if (!pipeWaiters_.empty()) at = std::min(at, pipeRetryAt_);
  if (at == INT64_MAX) return -1;
  int64_t wait = at - NowMs();
  return wait < 0 ? 0 : int(std::min<int64_t>(wait, 60000));
}

// Deadlines only move later as bytes flow, so a full scan at the earliest one is exact.
void PairSet::CheckIdle() {
  int64_t now = NowMs();
  if (now < nextIdleCheck_) return;
  int64_t next = INT64_MAX;
  std::vector<Pair*> expired;
  for (auto& kv : pairs_) {
    Pair* p = kv.second;
    if (p->spec.idleMs <= 0) continue;
    int64_t deadline = p->lastActivity + p->spec.idleMs;
    if (deadline <= now) expired.push_back(p);
    else next = std::min(next, deadline);
  }
  for (Pair* p : expired) Finish(p, kIdle, 0);
  nextIdleCheck_ = next;
}

}  // namespace splice_native
