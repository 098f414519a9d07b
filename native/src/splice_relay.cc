// Zero-copy relay: one shared epoll thread moves bytes between the two sockets of every relayed
// connection with splice(2) through pipes, so payload never enters user space.
//
// Descriptors: the thread works on the fds JavaScript (libuv) owns, without duplicates, so an
// idle relay costs no descriptor beyond its two sockets. JS guarantees it closes neither fd until
// this pair has been reported done (splice-relay.ts defers the socket's destroy until then), and
// every pair leaves the epoll set before it is reported, after which the thread never touches its
// fds again. Native never closes a socket fd.
//
// Pipes: a direction holds a pipe only while it has bytes in flight. It takes one from a shared
// pool when its socket turns readable and gives it back as soon as the pipe is empty again, so
// thousands of idle relays share a handful of pipes. A pipe that still holds bytes stays with its
// direction until they are written. Out of descriptors, a direction waits for a pipe instead of
// failing.
//
// Kernels without an MPTCP splice_read (6.18 has none) serve splice from an MPTCP socket with
// copy_splice_read, i.e. one copy into fresh pages; reads from TCP sockets and all writes stay
// zero-copy. copy_splice_read allocates pages for the whole length asked for before it reads, so
// reads from MPTCP ask for what the socket holds (SIOCINQ), not for the pipe's free space: asking
// 1 MB for an 11-byte request cost 256 page allocations per call.
#include <napi.h>

#include "splice_native.h"
#include "wake_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

enum class End { Done, Idle, ClientError, UpstreamError };

const char* EndName(End e) {
  switch (e) {
    case End::Done: return "done";
    case End::Idle: return "idle";
    case End::ClientError: return "client-error";
    case End::UpstreamError: return "upstream-error";
  }
  return "done";
}

std::string ErrnoName(int err) {
  if (err == 0) return "";
  const char* n = strerrorname_np(err);
  return n ? n : "E" + std::to_string(err);
}

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

struct Pipe {
  int r = -1;
  int w = -1;
  size_t capacity = 0;
};

struct Pair;

// epoll_event.data.ptr points at one of these, so an event says which socket it is about.
struct SideTag {
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

struct Result {
  uint64_t id;
  uint64_t bytesUp;
  uint64_t bytesDown;
  End end;
  int err;
};

struct Pair {
  uint64_t id;
  int fd[2];  // client and upstream fds, owned by JS
  SideTag tag[2];
  // Edge-triggered readiness: set by an event, cleared by EAGAIN, so a stalled socket costs no
  // syscall until its next edge.
  bool canRead[2] = {true, true};
  bool canWrite[2] = {true, true};
  bool mptcp[2] = {false, false};  // reads sized by SIOCINQ (see the top of this file)
  Direction dir[2];  // [0] client → upstream, [1] upstream → client
  size_t pipeSize;
  int64_t idleMs;
  int64_t lastActivity;
  bool dead = false;
  bool queuedReady = false;
  bool waitingPipe = false;
  // Set for relays started from native code: reported to this callback, not to JavaScript.
  splice_native::DoneFn onDone = nullptr;
  void* doneCtx = nullptr;
  splice_native::Progress* progress = nullptr;  // live byte counts for the native caller
};

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

// Empty pipes by requested size. Only the relay thread uses it.
class PipePool {
 public:
  // Returns 0 or an errno (EMFILE/ENFILE when out of descriptors).
  int Take(size_t want, Pipe& out) {
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
  // `empty`: the pipe holds no bytes and can serve another direction.
  void Give(size_t want, Pipe& p, bool empty) {
    inUse_--;
    auto& free = free_[want];
    if (empty && free.size() < kPoolMax) free.push_back(p);
    else {
      ClosePipe(p);
      created_--;
    }
    p = Pipe{};
  }
  size_t Open() const { return created_; }
  size_t InUse() const { return inUse_; }

 private:
  std::unordered_map<size_t, std::vector<Pipe>> free_;
  size_t created_ = 0;
  size_t inUse_ = 0;
};

class Engine {
 public:
  static Engine& Get() {
    static Engine* e = new Engine();  // never destroyed: the thread outlives module unload
    return *e;
  }

  // Returns 0, or an errno from starting the thread.
  int EnsureStarted() {
    std::lock_guard<std::mutex> lk(mu_);
    if (started_) return 0;
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return errno;
    if (int e = cmds_.Open()) {
      close(ep_);
      return e;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // null tag = wake-up eventfd
    epoll_ctl(ep_, EPOLL_CTL_ADD, cmds_.fd(), &ev);
    pthread_t t;
    int rc = pthread_create(&t, nullptr, &Engine::ThreadMain, this);
    if (rc != 0) {
      cmds_.Close();
      close(ep_);
      return rc;
    }
    pthread_detach(t);
    started_ = true;
    return 0;
  }

  // The one callback all results go to (set once, from the JS thread).
  void SetReporter(Napi::ThreadSafeFunction tsfn) { report_ = tsfn; }

  void Submit(Pair* p) {
    active_++;
    Post({p, 0});
  }
  void Abort(uint64_t id) { Post({nullptr, id}); }
  int Active() const { return active_.load(); }
  size_t PipesOpen() const { return pipesOpen_.load(); }
  size_t PipesInUse() const { return pipesInUse_.load(); }
  uint64_t NextId() { return ++lastId_; }

 private:
  struct Cmd {
    Pair* add;       // non-null: register this pair
    uint64_t abort;  // otherwise: end the pair with this id
  };

  void Post(Cmd c) { cmds_.Post(c); }

  static void* ThreadMain(void* self) {
    pthread_setname_np(pthread_self(), "mpx-splice");
    static_cast<Engine*>(self)->Loop();
    return nullptr;
  }

  void Loop() {
    std::vector<epoll_event> evs(256);
    for (;;) {
      int timeout = ready_.empty() ? Timeout() : 0;
      int n = epoll_wait(ep_, evs.data(), int(evs.size()), timeout);
      if (n < 0) n = 0;  // EINTR: just go round again
      for (int i = 0; i < n; i++) {
        auto* tag = static_cast<SideTag*>(evs[i].data.ptr);
        if (!tag) {
          DrainCommands();
          continue;
        }
        Pair* p = tag->pair;
        if (p->dead) continue;
        uint32_t e = evs[i].events;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) p->canRead[tag->side] = true;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) p->canWrite[tag->side] = true;
        if (e & EPOLLERR) {
          int err = SocketError(p->fd[tag->side]);
          if (err) {
            Finish(p, tag->side == kClient ? End::ClientError : End::UpstreamError, err);
            continue;
          }
        }
        Pump(p);
      }
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
      Report();
      for (Pair* p : graveyard_) delete p;
      graveyard_.clear();
      pipesOpen_ = pool_.Open();
      pipesInUse_ = pool_.InUse();
    }
  }

  void DrainCommands() {
    for (const Cmd& c : cmds_.Take()) {
      if (c.add) Add(c.add);
      else {
        auto it = pairs_.find(c.abort);
        if (it != pairs_.end()) Finish(it->second, End::ClientError, ECANCELED);
      }
    }
  }

  void Add(Pair* p) {
    pairs_[p->id] = p;
    p->lastActivity = NowMs();
    for (int s = 0; s < 2; s++) p->mptcp[s] = IsMptcp(p->fd[s]);
    if (p->idleMs > 0) nextIdleCheck_ = std::min(nextIdleCheck_, p->lastActivity + p->idleMs);
    for (int s = 0; s < 2; s++) {
      epoll_event ev{};
      // Edge-triggered: Pump always runs until EAGAIN (or a full pipe facing a blocked writer),
      // so every stall is ended by a later edge on the blocking socket.
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.ptr = &p->tag[s];
      if (epoll_ctl(ep_, EPOLL_CTL_ADD, p->fd[s], &ev) < 0) {
        Finish(p, s == kClient ? End::ClientError : End::UpstreamError, errno);
        return;
      }
    }
    Pump(p);
  }

  static bool IsMptcp(int fd) {
    int proto = 0;
    socklen_t len = sizeof proto;
    return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_MPTCP;
  }

  // How much one splice from `fd` may ask for: the pipe's free space, and for MPTCP no more than
  // the socket holds (at least a page, which also serves to see EOF or EAGAIN).
  static size_t ReadLength(Pair* p, int side, size_t room) {
    if (!p->mptcp[side]) return room;
    int avail = 0;
    if (ioctl(p->fd[side], SIOCINQ, &avail) < 0) return room;
    return std::min(room, std::max<size_t>(size_t(avail), 4096));
  }

  static int SocketError(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
  }

  // Moves what it can in both directions; ends the pair on error or when both are finished.
  void Pump(Pair* p) {
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
      Finish(p, End::Done, 0);
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
  bool Acquire(Pair* p, Direction& d) {
    if (d.pipe.r >= 0) return true;
    if (pool_.Take(p->pipeSize, d.pipe) == 0) return true;
    if (!p->waitingPipe) {
      p->waitingPipe = true;
      pipeWaiters_.push_back(p);
    }
    return false;
  }

  void Release(Pair* p, Direction& d) {
    if (d.pipe.r < 0) return;
    pool_.Give(p->pipeSize, d.pipe, d.inPipe == 0);
    d.inPipe = 0;
    pipeReturned_ = true;
  }

  // One read and one write on a direction. Returns 1 on progress, 0 when stalled, -1 if the
  // pair was finished.
  int Step(Pair* p, Direction& d, size_t& budget) {
    bool progress = false;
    if (!d.eof && p->canRead[d.from] && (d.pipe.r < 0 || d.inPipe < d.pipe.capacity) && Acquire(p, d)) {
      ssize_t n = splice(p->fd[d.from], nullptr, d.pipe.w, nullptr, ReadLength(p, d.from, d.pipe.capacity - d.inPipe),
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.inPipe += size_t(n);
        progress = true;
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
      ssize_t n = splice(d.pipe.r, nullptr, p->fd[d.to], nullptr, d.inPipe,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.inPipe -= size_t(n);
        d.bytes += uint64_t(n);
        if (p->progress) p->progress->bytes[&d - p->dir].store(d.bytes, std::memory_order_relaxed);
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
  void RetryPipeWaiters() {
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

  int Fail(Pair* p, int side, int err) {
    Finish(p, side == kClient ? End::ClientError : End::UpstreamError, err);
    return -1;
  }

  // Ends a pair: out of the epoll set, pipes back (bytes still in one are dropped with it), and
  // the result queued for JavaScript. The fds stay open: JS closes them once it has the result.
  void Finish(Pair* p, End end, int err) {
    for (int s = 0; s < 2; s++) epoll_ctl(ep_, EPOLL_CTL_DEL, p->fd[s], nullptr);  // harmless if never added
    for (Direction& d : p->dir) Release(p, d);
    p->dead = true;
    if (p->waitingPipe) pipeWaiters_.erase(std::remove(pipeWaiters_.begin(), pipeWaiters_.end(), p), pipeWaiters_.end());
    pairs_.erase(p->id);
    graveyard_.push_back(p);  // events of this pass may still point at it
    active_--;
    if (p->onDone) p->onDone(p->doneCtx, p->dir[0].bytes, p->dir[1].bytes, int(end), err);
    else results_.push_back(Result{p->id, p->dir[0].bytes, p->dir[1].bytes, end, err});
  }

  // One call into JavaScript per loop pass, carrying every pair that ended in it.
  void Report() {
    if (results_.empty()) return;
    auto* batch = new std::vector<Result>();
    batch->swap(results_);
    napi_status st = report_.NonBlockingCall(batch, [](Napi::Env env, Napi::Function cb, std::vector<Result>* rs) {
      if (env != nullptr && cb != nullptr) {
        for (const Result& r : *rs) {
          std::string code = ErrnoName(r.err);
          cb.Call({Napi::Number::New(env, double(r.id)), Napi::Number::New(env, double(r.bytesUp)),
                   Napi::Number::New(env, double(r.bytesDown)), Napi::String::New(env, EndName(r.end)),
                   code.empty() ? env.Undefined() : Napi::String::New(env, code)});
        }
      }
      delete rs;
    });
    if (st != napi_ok) delete batch;  // environment shutting down: nobody left to tell
  }

  int Timeout() {
    int64_t at = nextIdleCheck_;
    if (!pipeWaiters_.empty()) at = std::min(at, pipeRetryAt_);
    if (at == INT64_MAX) return -1;
    int64_t wait = at - NowMs();
    return wait < 0 ? 0 : int(std::min<int64_t>(wait, 60000));
  }

  // Deadlines only move later as bytes flow, so a full scan at the earliest one is exact.
  void CheckIdle() {
    int64_t now = NowMs();
    if (now < nextIdleCheck_) return;
    int64_t next = INT64_MAX;
    std::vector<Pair*> expired;
    for (auto& kv : pairs_) {
      Pair* p = kv.second;
      if (p->idleMs <= 0) continue;
      int64_t deadline = p->lastActivity + p->idleMs;
      if (deadline <= now) expired.push_back(p);
      else next = std::min(next, deadline);
    }
    for (Pair* p : expired) Finish(p, End::Idle, 0);
    nextIdleCheck_ = next;
  }

  std::mutex mu_;
  bool started_ = false;
  int ep_ = -1;
  WakeQueue<Cmd> cmds_;
  Napi::ThreadSafeFunction report_;
  std::atomic<int> active_{0};
  std::atomic<uint64_t> lastId_{0};
  std::atomic<size_t> pipesOpen_{0};
  std::atomic<size_t> pipesInUse_{0};
  // Owned by the thread:
  std::unordered_map<uint64_t, Pair*> pairs_;
  std::vector<Pair*> ready_;
  std::vector<Pair*> graveyard_;
  std::vector<Result> results_;
  std::deque<Pair*> pipeWaiters_;
  PipePool pool_;
  bool pipeReturned_ = false;
  int64_t pipeRetryAt_ = 0;
  int64_t nextIdleCheck_ = INT64_MAX;
};

Pair* NewPair(int clientFd, int upstreamFd, int64_t idleMs, size_t pipeSize) {
  auto* p = new Pair();
  p->fd[kClient] = clientFd;
  p->fd[kUpstream] = upstreamFd;
  for (int s = 0; s < 2; s++) p->tag[s] = {p, s};
  p->dir[0].from = kClient;
  p->dir[0].to = kUpstream;
  p->dir[1].from = kUpstream;
  p->dir[1].to = kClient;
  p->pipeSize = pipeSize;
  p->idleMs = idleMs;
  p->id = Engine::Get().NextId();
  return p;
}

Napi::Value ThrowErrno(Napi::Env env, const char* what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Pairs started and not yet reported, counted on the JS thread: the reporter keeps the event
// loop alive only while there are some.
int jsPending = 0;
bool reporterSet = false;
Napi::ThreadSafeFunction reporter;

// init(done): done(id, bytesUp, bytesDown, end, errorCode?) is called once per pair, on the JS
// thread. Call once, before start().
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "init(done)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (reporterSet) {
    Napi::Error::New(env, "splice relay already initialised").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Engine& eng = Engine::Get();
  if (int err = eng.EnsureStarted()) return ThrowErrno(env, "splice relay thread", err);
  Napi::Function user = info[0].As<Napi::Function>();
  auto* userRef = new Napi::FunctionReference(Napi::Persistent(user));
  // Counts down jsPending before the user callback sees the result.
  Napi::Function wrapper = Napi::Function::New(
      env,
      [](const Napi::CallbackInfo& ci) -> Napi::Value {
        auto* ref = static_cast<Napi::FunctionReference*>(ci.Data());
        if (--jsPending == 0) reporter.Unref(ci.Env());
        std::vector<napi_value> args(ci.Length());
        for (size_t i = 0; i < ci.Length(); i++) args[i] = ci[i];
        return ref->Call(args);
      },
      "spliceRelayDone", userRef);
  reporter = Napi::ThreadSafeFunction::New(env, wrapper, "splice-relay", 0, 1);
  reporter.Unref(env);
  eng.SetReporter(reporter);
  reporterSet = true;
  return env.Undefined();
}

// start(clientFd, upstreamFd, idleMs, pipeSize) → id. The fds must stay open until done(id).
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "start(clientFd, upstreamFd, idleMs, pipeSize)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!reporterSet) {
    Napi::Error::New(env, "splice relay: init(done) first").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fds[2] = {info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()};
  int64_t idleMs = info[2].As<Napi::Number>().Int64Value();
  int64_t pipeSize = info[3].As<Napi::Number>().Int64Value();
  if (fds[0] < 0 || fds[1] < 0 || fds[0] == fds[1] || pipeSize <= 0) {
    Napi::RangeError::New(env, "bad fd or pipe size").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Pair* p = NewPair(fds[0], fds[1], idleMs, size_t(pipeSize));
  // Read before Submit: from then on the relay thread owns the pair and may end and free it
  // before this thread runs again.
  uint64_t id = p->id;
  if (jsPending++ == 0) reporter.Ref(env);
  Engine::Get().Submit(p);
  return Napi::Number::New(env, double(id));
}

// abort(id): end a running pair (reported as client-error ECANCELED). Unknown ids are ignored.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsNumber())
    Engine::Get().Abort(uint64_t(info[0].As<Napi::Number>().Int64Value()));
  return info.Env().Undefined();
}

// stats(): pairs running natively, pipes open (in use + pooled) and pipes holding a direction's bytes.
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine& eng = Engine::Get();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", Napi::Number::New(env, eng.Active()));
  o.Set("pipesOpen", Napi::Number::New(env, double(eng.PipesOpen())));
  o.Set("pipesInUse", Napi::Number::New(env, double(eng.PipesInUse())));
  return o;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("start", Napi::Function::New(env, Start, "start"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("stats", Napi::Function::New(env, Stats, "stats"));
  FastPathRegister(env, exports);
  NetlinkWatchRegister(env, exports);
  return exports;
}

}  // namespace

namespace splice_native {

int Submit(int clientFd, int upstreamFd, int64_t idleMs, size_t pipeSize, DoneFn done, void* ctx, uint64_t* id, Progress* progress) {
  Engine& eng = Engine::Get();
  if (int err = eng.EnsureStarted()) return err;
  Pair* p = NewPair(clientFd, upstreamFd, idleMs, pipeSize);
  p->onDone = done;
  p->doneCtx = ctx;
  p->progress = progress;
  *id = p->id;
  eng.Submit(p);
  return 0;
}

void Abort(uint64_t id) { Engine::Get().Abort(id); }

}  // namespace splice_native

NODE_API_MODULE(splice_relay, InitModule)
