// Zero-copy relay for the TS path: one shared epoll thread runs a splice pair set
// (splice_pairs.h) for the connections JavaScript hands it and reports each end to JS.
//
// Descriptors: the thread works on the fds JavaScript (libuv) owns, without duplicates, so an
// idle relay costs no descriptor beyond its two sockets. JS guarantees it closes neither fd until
// this pair has been reported done (splice-relay.ts defers the socket's destroy until then), and
// every pair leaves the epoll set before it is reported, after which the thread never touches its
// fds again. Native never closes a socket fd.
#include <napi.h>

#include "splice_native.h"
#include "splice_pairs.h"
#include "wake_queue.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace {

const char* EndName(int e) {
  switch (e) {
    case splice_native::kDone: return "done";
    case splice_native::kIdle: return "idle";
    case splice_native::kClientError: return "client-error";
    case splice_native::kUpstreamError: return "upstream-error";
  }
  return "done";
}

std::string ErrnoName(int err) {
  if (err == 0) return "";
  const char* n = strerrorname_np(err);
  return n ? n : "E" + std::to_string(err);
}

struct Result {
  uint64_t id;
  uint64_t bytesUp;
  uint64_t bytesDown;
  int end;
  int err;
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
    set_ = new splice_native::PairSet(ep_);
    pthread_t t;
    int rc = pthread_create(&t, nullptr, &Engine::ThreadMain, this);
    if (rc != 0) {
      delete set_;
      set_ = nullptr;
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

  // Relays fds for JS; the result goes to the reporter. Returns the relay's id.
  uint64_t Submit(int clientFd, int upstreamFd, int64_t idleMs, size_t pipeSize) {
    active_++;
    uint64_t id = splice_native::NextPairId();
    Post({splice_native::PairSpec{id, clientFd, upstreamFd, idleMs, pipeSize, &Engine::Done, this, nullptr}, 0});
    return id;
  }
  void Abort(uint64_t id) { Post({splice_native::PairSpec{}, id}); }
  int Active() const { return active_.load(); }
  size_t PipesOpen() const { return pipesOpen_.load(); }
  size_t PipesInUse() const { return pipesInUse_.load(); }

 private:
  struct Cmd {
    splice_native::PairSpec add;  // add.done set: register this pair
    uint64_t abort;                // otherwise: end the pair with this id
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
      int n = epoll_wait(ep_, evs.data(), int(evs.size()), set_->Timeout());
      if (n < 0) n = 0;  // EINTR: just go round again
      for (int i = 0; i < n; i++) {
        auto* tag = static_cast<splice_native::TagHead*>(evs[i].data.ptr);
        if (!tag) DrainCommands();
        else set_->OnEvent(tag, evs[i].events);
      }
      set_->Pass();
      Report();
      pipesOpen_ = set_->PipesOpen();
      pipesInUse_ = set_->PipesInUse();
    }
  }

  void DrainCommands() {
    for (const Cmd& c : cmds_.Take()) {
      if (c.add.done) set_->Add(c.add);
      else set_->Abort(c.abort);
    }
  }

  // On the thread, for every pair that ended: queued for the pass's one call into JavaScript.
  static void Done(void* ctx, uint64_t id, uint64_t up, uint64_t down, int end, int err) {
    auto* self = static_cast<Engine*>(ctx);
    self->active_--;
    self->results_.push_back(Result{id, up, down, end, err});
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

  std::mutex mu_;
  bool started_ = false;
  int ep_ = -1;
  WakeQueue<Cmd> cmds_;
  Napi::ThreadSafeFunction report_;
  std::atomic<int> active_{0};
  std::atomic<size_t> pipesOpen_{0};
  std::atomic<size_t> pipesInUse_{0};
  // Owned by the thread:
  splice_native::PairSet* set_ = nullptr;
  std::vector<Result> results_;
};

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
  if (jsPending++ == 0) reporter.Ref(env);
  uint64_t id = Engine::Get().Submit(fds[0], fds[1], idleMs, size_t(pipeSize));
  return Napi::Number::New(env, double(id));
}

// abort(id): end a running pair (reported as client-error ECANCELED). Unknown ids are ignored.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsNumber())
    Engine::Get().Abort(uint64_t(info[0].As<Napi::Number>().Int64Value()));
  return info.Env().Undefined();
}

// stats(): relays started by start() still running, their thread's pipes open (in use + pooled) and pipes holding a direction's bytes.
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

NODE_API_MODULE(splice_relay, InitModule)
