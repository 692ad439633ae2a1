// A Unix datagram socket for the NAT log (unix-dgram.cc): registered next to the TUN device.
#pragma once

#include <napi.h>

namespace masq {
void InitUnixDgram(Napi::Env env, Napi::Object exports);
}
