// A NETLINK_ROUTE socket for following the outside interface's addresses and link (issue 11):
// the kernel multicasts RTM_NEWADDR/RTM_DELADDR and RTM_NEWLINK/RTM_DELLINK to the groups it is
// bound to, and answers the dump requests JavaScript sends. As with the TUN fd, libuv's uv_poll
// wakes us and we read without blocking; each datagram is handed to JavaScript as a copy (a few
// events a day on a real link: no need to share a buffer). The messages are parsed in TypeScript
// (src/io/rtnetlink.ts), where crafted and truncated ones are unit-tested.
#include "netlink.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <string>

namespace masq {

namespace {

/** Datagrams read per wake-up: a dump of a busy host's addresses is a few; the rest waits. */
constexpr int kReadBudget = 64;
/** One datagram: the kernel sends at most a page-sized (or 8 KB) skb per recv for dumps. */
constexpr size_t kBufBytes = 65536;

std::string ErrnoMessage(const char* what, int err) {
  return std::string(what) + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
}

class RouteSocket : public Napi::ObjectWrap<RouteSocket> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "RouteSocket",
                                      {
                                          InstanceMethod("send", &RouteSocket::Send),
                                          InstanceMethod("close", &RouteSocket::Close),
                                      });
    exports.Set("RouteSocket", ctor);
  }

  // new RouteSocket(groups, onMessage(buf | null, errno)): bound to the multicast `groups`
  // (RTMGRP_* bits). onMessage gets each datagram, or null and the errno of a failed read
  // (ENOBUFS: the kernel dropped events because we fell behind; the caller dumps again).
  explicit RouteSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RouteSocket>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "RouteSocket(groups: number, onMessage: function)").ThrowAsJavaScriptException();
      return;
    }
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) {
      Napi::Error::New(env, ErrnoMessage("socket(AF_NETLINK)", errno)).ThrowAsJavaScriptException();
      return;
    }
    sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = info[0].As<Napi::Number>().Uint32Value();
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      int err = errno;
      close(fd_);
      fd_ = -1;
      Napi::Error::New(env, ErrnoMessage("bind(AF_NETLINK)", err)).ThrowAsJavaScriptException();
      return;
    }
    onMessage_ = Napi::Persistent(info[1].As<Napi::Function>());
    asyncContext_ = new Napi::AsyncContext(env, "masq:netlink");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    int rc = uv_poll_init(loop, poll_, fd_);
    if (rc == 0) rc = uv_poll_start(poll_, UV_READABLE, &RouteSocket::OnPoll);
    if (rc != 0) {
      delete poll_;
      poll_ = nullptr;
      Shutdown();
      Napi::Error::New(env, std::string("uv_poll: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
      return;
    }
    // Unlike a TUN, this socket does not keep the process alive: masq runs for its TUNs.
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    Ref();
  }

  ~RouteSocket() override { Shutdown(); }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    RouteSocket* self = static_cast<RouteSocket*>(handle->data);
    if (status < 0 || !(events & UV_READABLE)) return;
    self->Drain();
  }

  void Drain() {
    Napi::Env env = onMessage_.Env();
    Napi::HandleScope scope(env);
    for (int i = 0; i < kReadBudget && fd_ >= 0; i++) {
      ssize_t n = recv(fd_, buf_, sizeof buf_, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        Deliver(env, env.Null(), errno);
        // ENOBUFS is reported once; the socket goes on. Anything else: stop here this wake-up.
        if (errno != ENOBUFS) return;
        continue;
      }
      Deliver(env, Napi::Buffer<uint8_t>::Copy(env, buf_, static_cast<size_t>(n)), 0);
    }
  }

  void Deliver(Napi::Env env, Napi::Value msg, int err) {
    if (onMessage_.IsEmpty()) return;
    // MakeCallback runs the microtask queue afterwards and routes a throw to 'uncaughtException'.
    onMessage_.MakeCallback(env.Global(), {msg, Napi::Number::New(env, err)}, *asyncContext_);
  }

  // send(buf): a request to the kernel (a dump); true when it was queued.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(env, "send(buf: Uint8Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array b = info[0].As<Napi::Uint8Array>();
    if (fd_ < 0) return Napi::Boolean::New(env, false);
    sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    ssize_t n = sendto(fd_, b.Data(), b.ByteLength(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    return Napi::Boolean::New(env, n == static_cast<ssize_t>(b.ByteLength()));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (poll_ != nullptr) {
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
      Unref();
    }
    if (!onMessage_.IsEmpty()) onMessage_.Reset();
    delete asyncContext_;
    asyncContext_ = nullptr;
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference onMessage_;
  Napi::AsyncContext* asyncContext_ = nullptr;
  uint8_t buf_[kBufBytes];
};

}  // namespace

void InitNetlink(Napi::Env env, Napi::Object exports) {
  RouteSocket::Init(env, exports);
  exports.Set("RTMGRP_LINK", static_cast<uint32_t>(RTMGRP_LINK));
  exports.Set("RTMGRP_IPV4_IFADDR", static_cast<uint32_t>(RTMGRP_IPV4_IFADDR));
}

}  // namespace masq
