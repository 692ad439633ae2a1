// A Unix datagram socket for the NAT log's "unix:/path" target (src/natlog/sender.ts): a local
// syslog daemon listens on one (rsyslog's imuxsock, /dev/log), and node:dgram has no AF_UNIX.
// Each send is non-blocking: a full receiver queue is EAGAIN, which the caller counts as a drop,
// so the packet loop that shares this thread never waits for the log.
#include "unix-dgram.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

namespace masq {

namespace {

// unixDgramSocket(): the fd of a non-blocking, unconnected AF_UNIX SOCK_DGRAM socket.
Napi::Value UnixDgramSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Napi::Error::New(env, std::string("socket(AF_UNIX): ") + strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// unixDgramSend(fd, path, buf): 0 when sent, else the errno (EAGAIN: the receiver's queue is full;
// ENOENT, ECONNREFUSED: nobody listens at path). Addressed per datagram, so a daemon that restarts
// on the same path is found again without reconnecting.
Napi::Value UnixDgramSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsTypedArray()) {
    Napi::TypeError::New(env, "unixDgramSend(fd, path, buf)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const std::string path = info[1].As<Napi::String>().Utf8Value();
  Napi::Uint8Array buf = info[2].As<Napi::Uint8Array>();
  sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) return Napi::Number::New(env, ENAMETOOLONG);
  memcpy(sa.sun_path, path.c_str(), path.size());
  ssize_t n = sendto(fd, buf.Data(), buf.ByteLength(), MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa),
                     static_cast<socklen_t>(sizeof sa));
  return Napi::Number::New(env, n < 0 ? errno : 0);
}

}  // namespace

void InitUnixDgram(Napi::Env env, Napi::Object exports) {
  exports.Set("unixDgramSocket", Napi::Function::New(env, UnixDgramSocket));
  exports.Set("unixDgramSend", Napi::Function::New(env, UnixDgramSend));
  // closeFd (native/steering.cc) closes its sockets too.
}

}  // namespace masq
