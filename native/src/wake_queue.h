// A command queue for an epoll thread: any thread posts, the eventfd wakes the loop, the loop
// takes everything posted so far in one go. Shared by the splice engine and the fast path loops.
#pragma once

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <deque>
#include <mutex>

template <typename T>
class WakeQueue {
 public:
  // 0, or the errno of eventfd().
  int Open() {
    fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd_ < 0 ? errno : 0;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  // Add this fd to the loop's epoll set.
  int fd() const { return fd_; }

  void Post(T c) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      items_.push_back(std::move(c));
    }
    uint64_t one = 1;
    ssize_t w = write(fd_, &one, sizeof one);
    (void)w;  // EAGAIN means the counter is already non-zero: a wake-up is pending anyway
  }

  // On the loop thread, when fd() was readable.
  std::deque<T> Take() {
    uint64_t v;
    while (read(fd_, &v, sizeof v) > 0) {
    }
    std::deque<T> out;
    std::lock_guard<std::mutex> lk(mu_);
    out.swap(items_);
    return out;
  }

 private:
  int fd_ = -1;
  std::mutex mu_;
  std::deque<T> items_;
};
