// Reads a netlink socket on the JS thread's own libuv loop: a uv_poll on the fd, drained with
// recv() in C on each readable event, every datagram of one drain handed to JavaScript in one
// call. libuv can poll any fd even where Node's net.Socket refuses a netlink one; without this
// the kernel view runs a worker_thread reader, whose wake-ups, recv calls through FFI and
// per-datagram posts were the largest per-tunnel cost left outside the fast path.
//
// Under a stream of events (thousands of new connections a second, a few events each) a call
// per readable event would wake the loop for each one: as in the worker reader, a drain is handed
// over at once when the last call is older than kCoalesceMs, otherwise the poll pauses and a
// timer hands over everything that came by kCoalesceMs after it. Sparse events wait for nothing.
//
// One call's Buffer holds entries of a 16-byte header (u32 data length, i32 errno, u64 receive
// time from uv_hrtime, the clock of process.hrtime) and the datagram's bytes. errno 0 is a
// datagram; ENOBUFS means the kernel dropped multicasts (the entry has no data); any other errno
// ended the watch (the poll is stopped; the caller closes the fd).
#include <errno.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstring>
#include <map>
#include <vector>

#include "splice_native.h"

namespace netlink_watch {
namespace {

constexpr size_t kRecvSize = 32768;
constexpr size_t kHeader = 16;
// The fast path's records wait up to 5 ms for their batch too: the loop then wakes about once per
// 5 ms for both (measured at 500 tunnels/s: main thread 0.165 ms per tunnel uncoalesced, 0.145
// at 1 ms, 0.103 at 5 ms).
constexpr uint64_t kCoalesceMs = 5;

struct Watch {
  uv_poll_t poll;
  uv_timer_t timer;
  int fd;
  int openHandles = 2;
  uint64_t lastCallMs = 0;
  napi_env env;
  Napi::FunctionReference callback;
  std::vector<uint8_t> out;
};

std::map<int, Watch*> gWatches;

void Append(Watch* w, const uint8_t* data, uint32_t len, int32_t err) {
  size_t at = w->out.size();
  w->out.resize(at + kHeader + len);
  uint64_t now = uv_hrtime();
  std::memcpy(&w->out[at], &len, 4);
  std::memcpy(&w->out[at + 4], &err, 4);
  std::memcpy(&w->out[at + 8], &now, 8);
  if (len > 0) std::memcpy(&w->out[at + kHeader], data, len);
}

void Closed(uv_handle_t* h) {
  Watch* w = static_cast<Watch*>(h->data);
  if (--w->openHandles == 0) delete w;
}

void Stop(Watch* w) {
  gWatches.erase(w->fd);
  uv_poll_stop(&w->poll);
  uv_timer_stop(&w->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), Closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->timer), Closed);
}

// Everything queued on the socket into w->out; false when an error ended the watch.
bool Drain(Watch* w) {
  static uint8_t buf[kRecvSize];
  for (;;) {
    ssize_t n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n >= 0) {
      Append(w, buf, uint32_t(n), 0);
      continue;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return true;
    if (err == EINTR) continue;
    Append(w, nullptr, 0, err);
    if (err != ENOBUFS) return false;
  }
}

// Hands w->out to JavaScript.
void Call(Watch* w) {
  if (w->out.empty()) return;
  w->lastCallMs = uv_now(w->poll.loop);
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  Napi::Buffer<uint8_t> batch = Napi::Buffer<uint8_t>::Copy(env, w->out.data(), w->out.size());
  w->out.clear();
  // MakeCallback: a callback from the loop itself, so microtasks run after it as after any I/O.
  w->callback.MakeCallback(env.Global(), {batch});
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

void OnReadable(uv_poll_t* handle, int status, int);

void OnTimer(uv_timer_t* handle) {
  Watch* w = static_cast<Watch*>(handle->data);
  bool ok = Drain(w);
  if (ok) uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  else Stop(w);  // the handles close on the loop's next turn: w lives through Call
  Call(w);
}

void OnReadable(uv_poll_t* handle, int status, int) {
  Watch* w = static_cast<Watch*>(handle->data);
  bool ok = status >= 0;
  if (!ok) Append(w, nullptr, 0, -status);
  else ok = Drain(w);
  if (!ok) {
    Stop(w);
    Call(w);
    return;
  }
  uint64_t since = uv_now(w->poll.loop) - w->lastCallMs;
  if (w->out.empty() || since >= kCoalesceMs) return Call(w);
  // Hold this drain: the socket keeps queueing until the timer takes everything at once.
  uv_poll_stop(&w->poll);
  uv_timer_start(&w->timer, OnTimer, kCoalesceMs - since, 0);
}

// netlinkWatch(fd, onBatch): start reading fd on this thread's loop. Does not keep the loop alive.
Napi::Value WatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "netlinkWatch(fd, onBatch)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (gWatches.count(fd)) {
    Napi::Error::New(env, "netlinkWatch: fd already watched").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  Watch* w = new Watch();
  w->fd = fd;
  w->env = env;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    delete w;
    Napi::Error::New(env, std::string("netlinkWatch: uv_poll_init: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uv_timer_init(loop, &w->timer);
  w->poll.data = w;
  w->timer.data = w;
  w->callback = Napi::Persistent(info[1].As<Napi::Function>());
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->timer));
  uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  gWatches[fd] = w;
  return env.Undefined();
}

// netlinkUnwatch(fd): no callback for fd after this returns; the caller may close the fd.
Napi::Value UnwatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "netlinkUnwatch(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto it = gWatches.find(info[0].As<Napi::Number>().Int32Value());
  if (it != gWatches.end()) Stop(it->second);
  return env.Undefined();
}

}  // namespace
}  // namespace netlink_watch

void NetlinkWatchRegister(Napi::Env env, Napi::Object exports) {
  exports.Set("netlinkWatch", Napi::Function::New(env, netlink_watch::WatchFd, "netlinkWatch"));
  exports.Set("netlinkUnwatch", Napi::Function::New(env, netlink_watch::UnwatchFd, "netlinkUnwatch"));
}
