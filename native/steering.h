// The eBPF side of the addon (steering.cc): loading the TUN's queue-selection program, its
// override map, and running a program on a packet for the tests. Registered next to the TUN.
#pragma once

#include <napi.h>

namespace masq {
void InitSteering(Napi::Env env, Napi::Object exports);
}
