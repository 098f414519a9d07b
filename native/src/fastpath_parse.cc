#include "fastpath_parse.h"

#include <arpa/inet.h>
#include <string.h>

#include <cstdio>

namespace fastpath {
namespace {

ParseOut Handoff(ParseOut o, const char* why) {
  o.verdict = Verdict::Handoff;
  o.reason = why;
  return o;
}

// 16 bytes of an IPv6 address; IPv4-mapped ones become IPv4, as the TS connector dials them.
void SetV6(ParseOut& o, const uint8_t* a) {
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(a, kMapped, 12) == 0) {
    o.family = 4;
    memcpy(o.addr, a + 12, 4);
  } else {
    o.family = 6;
    memcpy(o.addr, a, 16);
  }
}

ParseOut ParseSocks5(const uint8_t* b, size_t n, ParseOut o) {
  o.proto = Proto::Socks5;
  if (n < 2) return o;
  size_t nm = b[1];
  if (nm == 0) return Handoff(o, "socks5 greeting without methods");
  if (n < 2 + nm) return o;
  if (!memchr(b + 2, 0x00, nm)) return Handoff(o, "socks5 client does not offer no-auth");
  size_t g = 2 + nm;
  o.greetingLen = g;
  if (n < g + 1) return o;
  if (b[g] != 0x05) return Handoff(o, "socks5 request version");
  if (n < g + 2) return o;
  if (b[g + 1] != 0x01) return Handoff(o, "socks5 command other than CONNECT");
  if (n < g + 4) return o;
  uint8_t atyp = b[g + 3];
  size_t alen = atyp == 0x01 ? 4 : atyp == 0x04 ? 16 : 0;
  if (alen == 0) return Handoff(o, "socks5 address type other than IPv4/IPv6");
  size_t end = g + 4 + alen + 2;
  if (n < end) return o;
  const uint8_t* a = b + g + 4;
  o.port = uint16_t(b[end - 2] << 8 | b[end - 1]);
  if (o.port == 0) return Handoff(o, "port 0");
  inet_ntop(atyp == 0x01 ? AF_INET : AF_INET6, a, o.host, sizeof o.host);
  if (atyp == 0x01) {
    o.family = 4;
    memcpy(o.addr, a, 4);
  } else {
    SetV6(o, a);
  }
  o.consumed = end;
  o.verdict = Verdict::Connect;
  return o;
}

ParseOut ParseSocks4(const uint8_t* b, size_t n, ParseOut o) {
  o.proto = Proto::Socks4;
  if (n < 2) return o;
  if (b[1] != 0x01) return Handoff(o, "socks4 command other than CONNECT");
  if (n < 8) return o;
  if (b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] != 0) return Handoff(o, "socks4a host name");
  constexpr size_t kMaxUserId = 255;  // as the TS codec
  const void* nul = memchr(b + 8, 0, n - 8);
  if (!nul) return n - 8 > kMaxUserId ? Handoff(o, "socks4 user id too long") : o;
  size_t userEnd = size_t(static_cast<const uint8_t*>(nul) - b);
  if (userEnd - 8 > kMaxUserId) return Handoff(o, "socks4 user id too long");
  o.port = uint16_t(b[2] << 8 | b[3]);
  if (o.port == 0) return Handoff(o, "port 0");
  o.family = 4;
  memcpy(o.addr, b + 4, 4);
  inet_ntop(AF_INET, b + 4, o.host, sizeof o.host);
  o.consumed = userEnd + 1;
  o.verdict = Verdict::Connect;
  return o;
}

bool IsTchar(uint8_t c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool NameIs(const uint8_t* name, size_t len, const char* want) {
  return strlen(want) == len && strncasecmp(reinterpret_cast<const char*>(name), want, len) == 0;
}

// Strict dotted quad (no leading zeros: "010" is octal to inet_aton and to the TS path).
bool DottedQuad(const char* s, uint8_t out[4]) {
  int part = 0;
  const char* p = s;
  for (; part < 4; part++) {
    if (*p < '0' || *p > '9') return false;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9') return false;
    unsigned v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 4) v = v * 10 + unsigned(*p++ - '0'), digits++;
    if (digits > 3 || v > 255) return false;
    out[part] = uint8_t(v);
    if (part < 3 && *p++ != '.') return false;
  }
  return *p == '\0';
}

// A Host value the HTTP front end's message rules take (src/proxy/http/message-rules.ts
// HOST_VALUE): uri-host [":" port], bracketed IP literal or reg-name with %XX, maybe empty.
bool HostValueOk(const uint8_t* v, size_t n) {
  while (n > 0 && (v[0] == ' ' || v[0] == '\t')) v++, n--;
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  size_t i = 0;
  auto hex = [](uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  if (n > 0 && v[0] == '[') {
    for (i = 1; i < n && (hex(v[i]) || v[i] == ':' || v[i] == '.'); i++) {
    }
    if (i == 1 || i >= n || v[i] != ']') return false;
    i++;
  } else {
    while (i < n) {
      uint8_t c = v[i];
      if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || strchr("._~!$&'()*+,;=-", c)) i++;
      else if (c == '%' && i + 2 < n && hex(v[i + 1]) && hex(v[i + 2])) i += 3;
      else break;
    }
  }
  if (i < n && v[i] == ':') {
    for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
    }
  }
  return i == n;
}

// "a.b.c.d:port" or "[v6]:port"; the port as TS's parseAuthority reads it (1..5 digits, 1..65535).
ParseOut Authority(const uint8_t* t, size_t len, ParseOut o) {
  size_t colon = len;
  while (colon > 0 && t[colon - 1] != ':') colon--;
  if (colon == 0) return Handoff(o, "CONNECT target without port");
  size_t plen = len - colon;
  if (plen < 1 || plen > 5) return Handoff(o, "CONNECT port");
  unsigned port = 0;
  for (size_t i = colon; i < len; i++) {
    if (t[i] < '0' || t[i] > '9') return Handoff(o, "CONNECT port");
    port = port * 10 + unsigned(t[i] - '0');
  }
  if (port < 1 || port > 65535) return Handoff(o, "CONNECT port range");
  size_t hlen = colon - 1;
  const uint8_t* h = t;
  bool bracketed = hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']';
  if (bracketed) h++, hlen -= 2;
  if (hlen == 0 || hlen >= sizeof o.host) return Handoff(o, "CONNECT host length");
  memcpy(o.host, h, hlen);
  o.host[hlen] = '\0';
  if (bracketed) {
    if (!memchr(o.host, ':', hlen)) return Handoff(o, "bracketed host is not IPv6");
    uint8_t a6[16];
    if (inet_pton(AF_INET6, o.host, a6) != 1) return Handoff(o, "CONNECT IPv6 literal");
    SetV6(o, a6);
  } else {
    if (!DottedQuad(o.host, o.addr)) return Handoff(o, "CONNECT host is not a dotted quad");
    o.family = 4;
  }
  o.port = uint16_t(port);
  o.verdict = Verdict::Connect;
  return o;
}

// Scans the whole head each time bytes arrive (bounded by maxHeadBytes), handing off at the
// first byte outside the strict subset so the TS parser sees malformed input as early as today.
ParseOut ParseConnect(const uint8_t* b, size_t n, const ParseLimits& lim, ParseOut o) {
  o.proto = Proto::Connect;
  static const char kMethod[] = "CONNECT ";
  static const char kVersion[] = " HTTP/1.";
  size_t i = 0;
  for (; i < sizeof kMethod - 1; i++) {
    if (i >= n) return o;
    if (b[i] != uint8_t(kMethod[i])) return Handoff(o, "not a CONNECT request");
  }
  size_t tStart = i;
  while (i < n && b[i] != ' ') {
    uint8_t c = b[i];
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':' || c == '[' || c == ']';
    if (!ok) return Handoff(o, "CONNECT target is not an IP literal");
    if (i - tStart > 64) return Handoff(o, "CONNECT target too long");
    i++;
  }
  if (i >= n) return o;
  size_t tEnd = i;
  if (tEnd == tStart) return Handoff(o, "empty CONNECT target");
  for (size_t k = 0; k < sizeof kVersion - 1; k++, i++) {
    if (i >= n) return o;
    if (b[i] != uint8_t(kVersion[k])) return Handoff(o, "CONNECT version");
  }
  if (i >= n) return o;
  if (b[i] != '0' && b[i] != '1') return Handoff(o, "CONNECT version");
  i++;
  size_t lines = 0;
  bool host = false;
  for (;;) {
    // At the CR ending the previous line.
    if (i >= n) return o;
    if (b[i] != '\r') return Handoff(o, "bytes after the line");
    if (++i >= n) return o;
    if (b[i] != '\n') return Handoff(o, "CR without LF");
    i++;
    if (i > lim.maxHeadBytes) return Handoff(o, "head too large");
    if (i >= n) return o;
    if (b[i] == '\r') {
      if (++i >= n) return o;
      if (b[i] != '\n') return Handoff(o, "CR without LF");
      o.consumed = i + 1;
      return Authority(b + tStart, tEnd - tStart, o);
    }
    if (++lines > lim.maxHeaderLines) return Handoff(o, "too many header lines");
    size_t nameStart = i;
    while (i < n && b[i] != ':') {
      if (!IsTchar(b[i])) return Handoff(o, "header name");
      i++;
    }
    if (i >= n) return i > lim.maxHeadBytes ? Handoff(o, "head too large") : o;
    if (i == nameStart) return Handoff(o, "empty header name");
    // A body or framing on a CONNECT is for the TS path to judge.
    if (NameIs(b + nameStart, i - nameStart, "content-length") || NameIs(b + nameStart, i - nameStart, "transfer-encoding"))
      return Handoff(o, "framing header on CONNECT");
    bool isHost = NameIs(b + nameStart, i - nameStart, "host");
    if (isHost && host) return Handoff(o, "second Host line");
    host = host || isHost;
    size_t valueStart = ++i;
    while (i < n && b[i] != '\r') {
      uint8_t c = b[i];
      if (!(c == '\t' || (c >= 0x20 && c < 0x7f))) return Handoff(o, "header value byte");
      i++;
    }
    if (i > lim.maxHeadBytes) return Handoff(o, "head too large");
    if (isHost && i < n && !HostValueOk(b + valueStart, i - valueStart)) return Handoff(o, "Host value");
  }
}

}  // namespace

ParseOut ParseHandshake(const uint8_t* b, size_t n, ListenerKind kind, const ParseLimits& lim) {
  ParseOut o;
  if (n == 0) return o;
  uint8_t v = b[0];
  bool socksByte = v == 0x04 || v == 0x05;
  if (kind == ListenerKind::Socks || (kind == ListenerKind::Mixed && socksByte)) {
    if (v == 0x05) return ParseSocks5(b, n, o);
    if (v == 0x04) return ParseSocks4(b, n, o);
    return Handoff(o, "not a SOCKS version byte");
  }
  return ParseConnect(b, n, lim, o);
}

}  // namespace fastpath
