// The splice pair engine: moves bytes between the two sockets of relayed connections with
// splice(2) through pipes, inside an epoll loop that belongs to its owner. The splice thread
// (splice_relay.cc, the TS path's relays) owns one set; every fast path loop (fastpath.cc) owns
// one for the tunnels it set up, so a tunnel stays on the thread that accepted it (a handoff to
// another thread cost a wake-up and a context switch per tunnel).
//
// An owner's loop: epoll_wait with Timeout(), OnEvent() for every event whose tag's kind is
// kPairTagKind, then Pass() once. A pair's fds are the caller's: native never closes them; every
// pair leaves the epoll set before DoneFn reports it, after which the set never touches its fds.
//
// Pipes: a direction holds a pipe only while it has bytes in flight. It takes one from the set's
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
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

namespace splice_native {

// The first member of every epoll tag in a loop that owns a PairSet: says whose event it is.
struct TagHead {
  uint8_t kind;
};
// The kind of a pair's tags; an owner's own tags use other values.
constexpr uint8_t kPairTagKind = 0xff;

// How a relay ended; the order of splice_relay.cc's end names.
enum EndReason { kDone = 0, kIdle = 1, kClientError = 2, kUpstreamError = 3 };

// Runs on the owner's thread once the pair has left the epoll set; the fds are the caller's again.
using DoneFn = void (*)(void* ctx, uint64_t id, uint64_t bytesUp, uint64_t bytesDown, int end, int err);

// Bytes a running relay has written so far, [0] client → upstream, [1] upstream → client. The
// loop stores them as it writes (relaxed: readers on other threads want a recent figure, not a
// fence); the caller owns the struct and must keep it alive until DoneFn ran.
struct Progress {
  std::atomic<uint64_t> bytes[2] = {{0}, {0}};
};

// A relay to start. `progress` may be null.
struct PairSpec {
  uint64_t id;  // NextPairId(): unique in the process
  int clientFd;
  int upstreamFd;
  int64_t idleMs;  // <= 0: no idle timeout
  size_t pipeSize;
  DoneFn done;
  void* ctx;
  Progress* progress;
};

uint64_t NextPairId();

struct Pipe {
  int r = -1;
  int w = -1;
  size_t capacity = 0;
};

// Empty pipes by requested size, for one set.
class PipePool {
 public:
  // Returns 0 or an errno (EMFILE/ENFILE when out of descriptors).
  int Take(size_t want, Pipe& out);
  // `empty`: the pipe holds no bytes and can serve another direction.
  void Give(size_t want, Pipe& p, bool empty);
  // Closes the pooled pipes (none is in use then or later).
  void Clear();
  size_t Open() const { return created_; }
  size_t InUse() const { return inUse_; }

 private:
  std::unordered_map<size_t, std::vector<Pipe>> free_;
  size_t created_ = 0;
  size_t inUse_ = 0;
};

struct Pair;
struct Direction;

class PairSet {
 public:
  explicit PairSet(int ep) : ep_(ep) {}
  PairSet(const PairSet&) = delete;
  PairSet& operator=(const PairSet&) = delete;

  // Starts relaying (may report at once, e.g. when epoll refuses an fd).
  void Add(const PairSpec& spec);
  // An event whose tag's kind is kPairTagKind.
  void OnEvent(TagHead* tag, uint32_t events);
  // Once per loop pass, after the events: pairs with bytes left, pipe waiters, idle timeouts.
  void Pass();
  // Milliseconds the loop may wait before the next Pass(); -1: until an event.
  int Timeout() const;
  // Ends a pair early (reported as client-error, ECANCELED); unknown ids are ignored.
  void Abort(uint64_t id);
  void AbortAll();
  size_t Active() const { return pairs_.size(); }
  size_t PipesOpen() const { return pool_.Open(); }
  size_t PipesInUse() const { return pool_.InUse(); }

 private:
  void Pump(Pair* p);
  bool Acquire(Pair* p, Direction& d);
  void Release(Pair* p, Direction& d);
  int Step(Pair* p, Direction& d, size_t& budget);
  void RetryPipeWaiters();
  int Fail(Pair* p, int side, int err);
  void Finish(Pair* p, EndReason end, int err);
  void CheckIdle();

  int ep_;
  std::unordered_map<uint64_t, Pair*> pairs_;
  std::vector<Pair*> ready_;
  std::vector<Pair*> graveyard_;
  std::deque<Pair*> pipeWaiters_;
  PipePool pool_;
  bool pipeReturned_ = false;
  int64_t pipeRetryAt_ = 0;
  int64_t nextIdleCheck_ = INT64_MAX;
};

}  // namespace splice_native
