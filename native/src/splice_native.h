// The addon's parts besides the splice relay (splice_relay.cc holds the module's entry point).
#pragma once

#include <napi.h>

// fastpath.cc's exports, added to the addon's.
void FastPathRegister(Napi::Env env, Napi::Object exports);
// netlink_watch.cc's exports, added to the addon's.
void NetlinkWatchRegister(Napi::Env env, Napi::Object exports);
