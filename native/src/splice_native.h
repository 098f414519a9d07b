// What the splice engine (splice_relay.cc) offers native callers: relays that report to a C
// callback on the relay thread instead of to JavaScript. The fast path (fastpath.cc) uses it.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace splice_native {

// How a relay ended; the order of splice_relay.cc's End.
enum EndReason { kDone = 0, kIdle = 1, kClientError = 2, kUpstreamError = 3 };

// Runs on the relay thread once the pair has left the epoll set; the fds are the caller's again.
using DoneFn = void (*)(void* ctx, uint64_t bytesUp, uint64_t bytesDown, int end, int err);

// Bytes a running relay has written so far, [0] client → upstream, [1] upstream → client. The
// relay thread stores them as it writes (relaxed: readers want a recent figure, not a fence);
// the caller owns the struct and must keep it alive until DoneFn ran.
struct Progress {
  std::atomic<uint64_t> bytes[2] = {{0}, {0}};
};

// Starts relaying two connected fds; 0 and the relay's id in *id, or an errno. `progress` may
// be null.
int Submit(int clientFd, int upstreamFd, int64_t idleMs, size_t pipeSize, DoneFn done, void* ctx, uint64_t* id, Progress* progress);
// Ends a running relay early (reported as client-error, ECANCELED); unknown ids are ignored.
void Abort(uint64_t id);

}  // namespace splice_native

// fastpath.cc's exports, added to the addon's.
void FastPathRegister(Napi::Env env, Napi::Object exports);
// netlink_watch.cc's exports, added to the addon's.
void NetlinkWatchRegister(Napi::Env env, Napi::Object exports);
