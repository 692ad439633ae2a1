// The bpf() syscall for the TUN's queue-selection program (TUNSETSTEERINGEBPF): a socket filter
// program assembled in TypeScript (src/datapath/steering-program.ts) is loaded here, its override
// table is an array map, and BPF_PROG_TEST_RUN runs it on a crafted packet so the tests can check
// its choice against the TypeScript model. No libbpf: the program is small and the four commands
// are plain syscalls (glibc has no wrapper for bpf()).
#include "steering.h"

#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace masq {
namespace {

long Bpf(int cmd, union bpf_attr* attr) { return syscall(__NR_bpf, cmd, attr, sizeof *attr); }

uint64_t Ptr(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

void ThrowErrno(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err) + " (errno " + std::to_string(err) + ")");
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
}

// bpfArrayMap(entries): the fd of an array map of `entries` u32 values indexed by a u32 key.
Napi::Value ArrayMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "bpfArrayMap(entries)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = info[0].As<Napi::Number>().Uint32Value();
  strncpy(attr.map_name, "masq_steer", BPF_OBJ_NAME_LEN - 1);
  long fd = Bpf(BPF_MAP_CREATE, &attr);
  if (fd < 0) {
    ThrowErrno(env, "BPF_MAP_CREATE", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(fd));
}

// bpfMapSet(mapFd, key, value): one entry of an array map (u32 key and value).
Napi::Value MapSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "bpfMapSet(mapFd, key, value)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t key = info[1].As<Napi::Number>().Uint32Value();
  uint32_t value = info[2].As<Napi::Number>().Uint32Value();
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = info[0].As<Napi::Number>().Uint32Value();
  attr.key = Ptr(&key);
  attr.value = Ptr(&value);
  attr.flags = BPF_ANY;
  if (Bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0) ThrowErrno(env, "BPF_MAP_UPDATE_ELEM", errno);
  return env.Undefined();
}

// bpfLoadSocketFilter(insns: Uint8Array): the program's fd; a refusal carries the verifier's log.
Napi::Value LoadSocketFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "bpfLoadSocketFilter(insns)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array insns = info[0].As<Napi::Uint8Array>();
  if (insns.ByteLength() == 0 || insns.ByteLength() % sizeof(struct bpf_insn) != 0) {
    Napi::RangeError::New(env, "bpfLoadSocketFilter: not whole instructions").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<char> log(64 * 1024, '\0');
  static const char kLicense[] = "MIT";
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  attr.insn_cnt = static_cast<uint32_t>(insns.ByteLength() / sizeof(struct bpf_insn));
  attr.insns = Ptr(insns.Data());
  attr.license = Ptr(kLicense);
  attr.log_level = 1;
  attr.log_size = static_cast<uint32_t>(log.size());
  attr.log_buf = Ptr(log.data());
  strncpy(attr.prog_name, "masq_steer", BPF_OBJ_NAME_LEN - 1);
  long fd = Bpf(BPF_PROG_LOAD, &attr);
  if (fd < 0) {
    int err = errno;
    ThrowErrno(env, std::string("BPF_PROG_LOAD (verifier: ") + log.data() + ")", err);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(fd));
}

// bpfTestRun(progFd, packet: Uint8Array): the program's return value for the IPv4 packet. The
// kernel takes an Ethernet frame for a socket filter and runs the program past its header, where
// a TUN's packets start; so the packet goes behind a header of type IPv4.
Napi::Value TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    Napi::TypeError::New(env, "bpfTestRun(progFd, packet)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array pkt = info[1].As<Napi::Uint8Array>();
  std::vector<uint8_t> frame(14 + pkt.ByteLength(), 0);
  frame[12] = 0x08;  // ETH_P_IP
  frame[13] = 0x00;
  memcpy(frame.data() + 14, pkt.Data(), pkt.ByteLength());
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.test.prog_fd = info[0].As<Napi::Number>().Uint32Value();
  attr.test.data_in = Ptr(frame.data());
  attr.test.data_size_in = static_cast<uint32_t>(frame.size());
  attr.test.repeat = 1;
  if (Bpf(BPF_PROG_TEST_RUN, &attr) < 0) {
    ThrowErrno(env, "BPF_PROG_TEST_RUN", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, attr.test.retval);
}

// closeFd(fd): for a map or program fd the caller no longer needs (the TUN keeps its own reference).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "closeFd(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  close(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

}  // namespace

void InitSteering(Napi::Env env, Napi::Object exports) {
  exports.Set("bpfArrayMap", Napi::Function::New(env, ArrayMap));
  exports.Set("bpfMapSet", Napi::Function::New(env, MapSet));
  exports.Set("bpfLoadSocketFilter", Napi::Function::New(env, LoadSocketFilter));
  exports.Set("bpfTestRun", Napi::Function::New(env, TestRun));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
}

}  // namespace masq
