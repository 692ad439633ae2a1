// The NETLINK_ROUTE socket of the addon (netlink.cc): registered next to the TUN device.
#pragma once

#include <napi.h>

namespace masq {
void InitNetlink(Napi::Env env, Napi::Object exports);
}
