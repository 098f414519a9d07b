// Pure handshake parser of the native fast path (no sockets, no N-API): SOCKS5 no-auth, SOCKS4
// and HTTP CONNECT to IP literals. It accepts a strict subset of what the TypeScript front ends
// accept and says "handoff" for everything else, as early as a byte shows the request is outside
// that subset, so the TS path answers bad or unusual input exactly as it always has. It never
// refuses on syntax itself: only what it fully understands stays native.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastpath {

enum class ListenerKind : uint8_t { Http = 0, Socks = 1, Mixed = 2 };
enum class Proto : uint8_t { Unknown = 0, Connect = 1, Socks4 = 2, Socks5 = 3 };
enum class Verdict : uint8_t { NeedMore = 0, Connect = 1, Handoff = 2 };

struct ParseLimits {
  size_t maxHeadBytes;   // a longer HTTP head is handed off (TS answers 431 or serves it)
  size_t maxHeaderLines; // more header lines are handed off (TS answers 431)
};

struct ParseOut {
  Verdict verdict = Verdict::NeedMore;
  Proto proto = Proto::Unknown;
  // SOCKS5: length of a complete greeting offering "no authentication" (0 until then); the
  // method selection is answered once it is known, before the request arrives.
  size_t greetingLen = 0;
  size_t consumed = 0;  // Connect: bytes of the whole handshake; the rest goes upstream
  int family = 0;       // Connect: 4 or 6, after unmapping IPv4-mapped IPv6
  uint8_t addr[16] = {};
  uint16_t port = 0;
  char host[64] = {};   // the destination as the TS path records it
  const char* reason = "";  // Handoff: why (tests and debug logs)
};

ParseOut ParseHandshake(const uint8_t* buf, size_t len, ListenerKind kind, const ParseLimits& limits);

}  // namespace fastpath
