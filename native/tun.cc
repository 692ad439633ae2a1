// masq's only native code: open a TUN device and move batches of packets between its fd and
// buffers owned by JavaScript (and two small helpers: huge-page memory, device-bound UDP sockets). Node cannot watch a
// TUN fd itself (net.Socket refuses it, fs.read goes through the thread pool), so libuv's uv_poll wakes us and we drain
// up to `budget` packets per wake-up with non-blocking reads. The budget keeps the event loop responsive: uv_poll is
// level-triggered, so what is left is read on the next loop iteration, after timers and sockets.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <napi.h>

#include "netlink.h"
#include "steering.h"
#include "unix-dgram.h"
#include "uring.h"

#include <string>
#include <vector>

// UDP segmentation offload (USO, Linux 6.2): older kernel headers (Debian 12's are 6.1) lack the
// names, but the values are ABI. A kernel without USO refuses the flags, and masq falls back.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

namespace {

// The virtio-net header before each packet with IFF_VNET_HDR (struct virtio_net_hdr of
// include/uapi/linux/virtio_net.h, which is not valid C++: a field there is named `class`),
// decoded field by field rather than read at bare offsets. TUN uses the legacy header in the
// host's byte order (no TUNSETVNETLE/BE is set), which on the little-endian hosts masq runs on is
// little-endian. src/packet/virtio-net.ts is the same structure on the JavaScript side.
struct VirtioNetHdr {
  static constexpr size_t kBytes = 10;
  // flags
  static constexpr uint8_t kNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum is partial
  // gso_type
  static constexpr uint8_t kGsoNone = 0;    // VIRTIO_NET_HDR_GSO_NONE
  static constexpr uint8_t kGsoTcpV4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4 (TSO)
  static constexpr uint8_t kGsoTcpV6 = 4;   // VIRTIO_NET_HDR_GSO_TCPV6
  static constexpr uint8_t kGsoUdpL4 = 5;   // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
  static constexpr uint8_t kGsoEcn = 0x80;  // VIRTIO_NET_HDR_GSO_ECN, a bit on top of the type

  uint8_t flags = 0;
  uint8_t gsoType = kGsoNone;
  uint16_t hdrLen = 0;
  uint16_t gsoSize = 0;
  uint16_t csumStart = 0;
  uint16_t csumOffset = 0;

  static VirtioNetHdr Decode(const uint8_t* b) {
    VirtioNetHdr h;
    h.flags = b[0];
    h.gsoType = b[1];
    h.hdrLen = Le16(b + 2);
    h.gsoSize = Le16(b + 4);
    h.csumStart = Le16(b + 6);
    h.csumOffset = Le16(b + 8);
    return h;
  }

  void Encode(uint8_t* b) const {
    b[0] = flags;
    b[1] = gsoType;
    PutLe16(b + 2, hdrLen);
    PutLe16(b + 4, gsoSize);
    PutLe16(b + 6, csumStart);
    PutLe16(b + 8, csumOffset);
  }

  /** The GSO type without the ECN bit. */
  uint8_t Segmentation() const { return gsoType & static_cast<uint8_t>(~kGsoEcn); }

 private:
  static uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
  static void PutLe16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v & 0xff);
    p[1] = static_cast<uint8_t>(v >> 8);
  }
};

class Tun;
// Busy polling, for all started devices together (masq's inside and outside TUNs): see BusyPoll.
// Per thread: each worker thread polls its own queues of the devices.
thread_local std::vector<Tun*> g_started;
uint64_t g_busyPollNs = 0;
/** The longest one wake-up spins, so timers and the control socket still get their turn. */
constexpr uint64_t kMaxSpinNs = 2000000;

// A write's length with this bit is the payload of one more datagram of the packet before it
// (see WriteBatch); the most a packet takes, as the kernel's UDP_MAX_SEGMENTS (64) allows.
constexpr uint32_t kWriteAppend = 0x80000000u;
constexpr uint32_t kMaxAppends = 63;

struct Counters {
  double rxPackets = 0, rxBytes = 0, rxWakeups = 0, rxBudgetHits = 0, rxErrors = 0, rxBusyPolled = 0;
  // GSO super-packets read (TCP: TSO, UDP: USO), each up to 64 KB the kernel segments on write.
  double rxGsoTcp = 0, rxGsoUdp = 0;
  double txPackets = 0, txBytes = 0, txFull = 0, txErrors = 0;
  // UDP super-packets written (datagrams of one flow the datapath merged; each counts in txPackets).
  double txGsoUdp = 0;
  // The io_uring path given up after a failed round (it had been set up): syscalls since.
  double uringFailures = 0;
};

std::string ErrnoText(const char* what, int err) {
  return std::string(what) + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
}

class Tun : public Napi::ObjectWrap<Tun> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "Tun",
                                      {
                                          InstanceMethod("start", &Tun::Start),
                                          InstanceMethod("stop", &Tun::Stop),
                                          InstanceMethod("write", &Tun::Write),
                                          InstanceMethod("writeBatch", &Tun::WriteBatch),
                                          InstanceMethod("stats", &Tun::Stats),
                                          InstanceMethod("close", &Tun::Close),
                                          InstanceMethod("setPersist", &Tun::SetPersist),
                                          InstanceMethod("attachSteering", &Tun::AttachSteering),
                                          InstanceMethod("useUring", &Tun::UseUring),
                                          InstanceAccessor("name", &Tun::Name, nullptr),
                                          InstanceAccessor("offloads", &Tun::Offloads, nullptr),
                                      });
    exports.Set("Tun", ctor);
    return exports;
  }

  // new Tun(name, vnetHdr, offloadFlags[], multiQueue?): with multiQueue, one more queue of the
  // device (IFF_MULTI_QUEUE); the kernel numbers the queues in the order they are opened.
  explicit Tun(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tun>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsBoolean() || !info[2].IsArray()) {
      Napi::TypeError::New(env, "Tun(name: string, vnetHdr: boolean, offloads: number[])").ThrowAsJavaScriptException();
      return;
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    bool vnet = info[1].As<Napi::Boolean>().Value();
    bool multiQueue = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
    if (name.size() >= IFNAMSIZ) {
      Napi::Error::New(env, "TUN name too long: " + name).ThrowAsJavaScriptException();
      return;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      Napi::Error::New(env, ErrnoText("open /dev/net/tun", errno)).ThrowAsJavaScriptException();
      return;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0) | (multiQueue ? IFF_MULTI_QUEUE : 0);
    strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      close(fd);
      Napi::Error::New(env, ErrnoText(("TUNSETIFF " + name).c_str(), err)).ThrowAsJavaScriptException();
      return;
    }
    // Always set the offloads, to 0 without a vnet header: a persistent TUN keeps its previous
    // owner's offloads, and a plain reader would then see packets with unfinished checksums.
    // With a header, try the candidate sets in order (the kernel refuses flags it lacks).
    Napi::Array candidates = info[2].As<Napi::Array>();
    unsigned long chosen = 0;
    bool set = false;
    if (vnet) {
      for (uint32_t i = 0; i < candidates.Length() && !set; i++) {
        unsigned long flags = candidates.Get(i).As<Napi::Number>().Uint32Value();
        if (ioctl(fd, TUNSETOFFLOAD, flags) == 0) {
          chosen = flags;
          set = true;
        }
      }
    }
    if (!set && ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
      int err = errno;
      close(fd);
      Napi::Error::New(env, ErrnoText("TUNSETOFFLOAD", err)).ThrowAsJavaScriptException();
      return;
    }
    fd_ = fd;
    vnetHdr_ = vnet;
    name_ = ifr.ifr_name;
    offloads_ = chosen;
  }

  ~Tun() override { Shutdown(); }

 private:
  // start(buf: Uint8Array, meta: Uint32Array, maxPacket: number, budget: number, onBatch)
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) {
      Napi::Error::New(env, "TUN is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (poll_ != nullptr) {
      Napi::Error::New(env, "TUN already started").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
        !info[3].IsNumber() || !info[4].IsFunction()) {
      Napi::TypeError::New(env, "start(buf, meta, maxPacket, budget, onBatch)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    Napi::Uint32Array meta = info[1].As<Napi::Uint32Array>();
    buf_ = buf.Data();
    bufLen_ = buf.ByteLength();
    meta_ = meta.Data();
    metaPairs_ = meta.ElementLength() / 2;
    maxPacket_ = info[2].As<Napi::Number>().Uint32Value();
    budget_ = info[3].As<Napi::Number>().Uint32Value();
    if (maxPacket_ == 0 || maxPacket_ > bufLen_ || budget_ == 0) {
      Napi::RangeError::New(env, "start: maxPacket must fit the buffer and budget be > 0").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // Keep the buffers alive while native code holds raw pointers into them.
    bufRef_ = Napi::Persistent(buf);
    metaRef_ = Napi::Persistent(meta);
    onBatch_ = Napi::Persistent(info[4].As<Napi::Function>());
    asyncContext_ = new Napi::AsyncContext(env, "masq:tun");

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    int rc = uv_poll_init(loop, poll_, fd_);
    if (rc == 0) rc = uv_poll_start(poll_, UV_READABLE, &Tun::OnPoll);
    if (rc != 0) {
      delete poll_;
      poll_ = nullptr;
      Napi::Error::New(env, std::string("uv_poll: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // The poll handle keeps the process alive while the device is open, as a server socket does.
    Ref();
    g_started.push_back(this);
    return env.Undefined();
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Tun* self = static_cast<Tun*>(handle->data);
    if (status < 0) {
      self->counters_.rxErrors++;
      return;
    }
    if ((events & UV_READABLE) && self->Drain(true) > 0 && g_busyPollNs > 0) BusyPoll();
  }

  // After a batch, what answers the packets just written (a reply, the next segments of a
  // stream) often comes back within tens of microseconds. Sleeping in epoll meanwhile costs a
  // wake-up, and on a virtual CPU that halted meanwhile that takes hundreds of microseconds (the
  // kernel's own NAT never sleeps: it forwards in the sender's softirq). So keep reading, without
  // blocking, every started device for up to g_busyPollNs after the last packet, at most
  // kMaxSpinNs per wake-up; then return to libuv.
  static void BusyPoll() {
    const uint64_t start = uv_hrtime();
    uint64_t lastPacket = start;
    for (;;) {
      bool any = false;
      // By index: a batch callback may stop a device (and remove it from the list).
      for (size_t i = 0; i < g_started.size(); i++)
        if (g_started[i]->Drain(false) > 0) any = true;
      const uint64_t now = uv_hrtime();
      if (any)
        lastPacket = now;
      else if (now - lastPacket >= g_busyPollNs)
        return;
      if (now - start >= kMaxSpinNs) return;
    }
  }

  // Reads up to a budget of packets and hands them to JavaScript; returns how many.
  uint32_t Drain(bool wakeup) {
    if (wakeup) counters_.rxWakeups++;
    const uint32_t count = uring_.on() ? ReadUring() : ReadSyscalls();
    if (count == 0) return 0;
    if (!wakeup) counters_.rxBusyPolled += count;
    Napi::Env env = onBatch_.Env();
    Napi::HandleScope scope(env);
    // MakeCallback runs the microtask queue afterwards and routes a throw to 'uncaughtException'.
    onBatch_.MakeCallback(env.Global(), {Napi::Number::New(env, count)}, *asyncContext_);
    return count;
  }

  // One read() per packet until the queue is empty or the budget is reached.
  uint32_t ReadSyscalls() {
    uint32_t count = 0;
    size_t pos = 0;
    const uint32_t limit = budget_ < metaPairs_ ? budget_ : static_cast<uint32_t>(metaPairs_);
    while (count < limit && pos + maxPacket_ <= bufLen_) {
      ssize_t n = read(fd_, buf_ + pos, maxPacket_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) counters_.rxErrors++;
        break;
      }
      if (n == 0) break;
      meta_[2 * count] = static_cast<uint32_t>(pos);
      meta_[2 * count + 1] = static_cast<uint32_t>(n);
      if (vnetHdr_ && static_cast<size_t>(n) >= VirtioNetHdr::kBytes) CountGso(VirtioNetHdr::Decode(buf_ + pos));
      count++;
      counters_.rxBytes += n;
      // 8-byte alignment keeps each IP header word-aligned for the engine's reads.
      pos += (static_cast<size_t>(n) + 7) & ~static_cast<size_t>(7);
    }
    if (count == limit) counters_.rxBudgetHits++;
    counters_.rxPackets += count;
    return count;
  }

  // Rounds of reads through the ring, one io_uring_enter each, into slots of maxPacket bytes (a
  // read's length is known only afterwards). A round asks for as many packets as the last
  // wake-up brought, and a full round is followed by one twice as large, up to the budget; a
  // round that comes back short found the queue empty. The reads past the queue's end are the
  // price of not knowing its length: each answers -EAGAIN inside the same enter.
  uint32_t ReadUring() {
    const size_t stride = (static_cast<size_t>(maxPacket_) + 7) & ~static_cast<size_t>(7);
    uint32_t limit = budget_ < metaPairs_ ? budget_ : static_cast<uint32_t>(metaPairs_);
    if (bufLen_ / stride < limit) limit = static_cast<uint32_t>(bufLen_ / stride);
    if (uring_.entries() < limit) limit = uring_.entries();
    uint32_t count = 0;
    uint32_t ask = readAhead_ < limit ? readAhead_ : limit;
    bool full = true;
    while (full && count < limit) {
      if (ask > limit - count) ask = limit - count;
      if (!uring_.Read(buf_ + count * stride, stride, maxPacket_, ask, res_.data())) {
        // The ring failed: the syscalls from here on. Nothing of the round was read.
        counters_.uringFailures++;
        break;
      }
      uint32_t got = 0;
      for (uint32_t i = 0; i < ask; i++) {
        const int32_t n = res_[i];
        if (n <= 0) {
          if (n < 0 && n != -EAGAIN) counters_.rxErrors++;
          full = false;
          continue;
        }
        // A packet after an empty answer (one that arrived meanwhile) is kept: its slot is its
        // own, and its meta pair follows the round's packets before it.
        const size_t pos = (count + i) * stride;
        meta_[2 * (count + got)] = static_cast<uint32_t>(pos);
        meta_[2 * (count + got) + 1] = static_cast<uint32_t>(n);
        if (vnetHdr_ && static_cast<size_t>(n) >= VirtioNetHdr::kBytes) CountGso(VirtioNetHdr::Decode(buf_ + pos));
        counters_.rxBytes += n;
        got++;
      }
      count += got;
      if (!full) break;
      ask *= 2;
    }
    if (count == limit) counters_.rxBudgetHits++;
    counters_.rxPackets += count;
    readAhead_ = count < kMinReadAhead ? kMinReadAhead : count;
    return count;
  }

  void CountGso(const VirtioNetHdr& h) {
    switch (h.Segmentation()) {
      case VirtioNetHdr::kGsoTcpV4:
      case VirtioNetHdr::kGsoTcpV6:
        counters_.rxGsoTcp++;
        break;
      case VirtioNetHdr::kGsoUdpL4:
        counters_.rxGsoUdp++;
        break;
      default:
        break;
    }
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  // write(buf, off, len): boolean
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(env, "write(buf, off, len)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    uint32_t off = info[1].As<Napi::Number>().Uint32Value();
    uint32_t len = info[2].As<Napi::Number>().Uint32Value();
    if (static_cast<size_t>(off) + len > buf.ByteLength()) {
      Napi::RangeError::New(env, "write: range beyond the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Boolean::New(env, WriteOne(buf.Data() + off, len));
  }

  // writeBatch(buf, meta, count): datagrams written. A length with kWriteAppend set is not a
  // packet of its own but the payload of one more datagram of the packet before it: the datapath
  // merged the two into a UDP segmentation (USO) super-packet, whose header it rewrote
  // (src/datapath/udp-coalesce.ts). Such a packet goes out as one writev of its pieces in place.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray()) {
      Napi::TypeError::New(env, "writeBatch(buf, meta, count)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    Napi::Uint32Array meta = info[1].As<Napi::Uint32Array>();
    uint32_t count = info[2].As<Napi::Number>().Uint32Value();
    if (static_cast<size_t>(count) * 2 > meta.ElementLength()) count = meta.ElementLength() / 2;
    uint8_t* data = buf.Data();
    const size_t size = buf.ByteLength();
    const uint32_t* m = meta.Data();
    uint32_t written = 0;
    bool groupOpen = false;    // a packet is gathered at the end of the round and may take appends
    bool groupBroken = false;  // a piece of it was out of range: all of it is dropped
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t off = m[2 * i];
      const bool append = (m[2 * i + 1] & kWriteAppend) != 0;
      const uint32_t len = m[2 * i + 1] & ~kWriteAppend;
      const bool inRange = static_cast<size_t>(off) + len <= size;
      if (append && groupOpen && groups_ > 0 && iovUsed_ < iovs_.size()) {
        Group& g = group_[groups_ - 1];
        iovs_[iovUsed_++] = iovec{data + off, len};
        g.iovs++;
        g.datagrams++;
        if (!inRange) groupBroken = true;
        continue;
      }
      if (groupBroken) DropLastGroup();
      groupBroken = false;
      groupOpen = false;
      if (append || !inRange) {
        // An append with no packet to join (the datapath never makes one), or out of range.
        counters_.txErrors++;
        continue;
      }
      // A new packet; the round goes first when it cannot hold one more whole super-packet.
      if (groups_ == group_.size() || iovUsed_ + kMaxAppends + 1 > iovs_.size()) written += WriteRound();
      group_[groups_++] = Group{iovUsed_, 1, 1};
      iovs_[iovUsed_++] = iovec{data + off, len};
      groupOpen = true;
    }
    if (groupBroken) DropLastGroup();
    written += WriteRound();
    return Napi::Number::New(env, written);
  }

  // The last packet gathered had a piece out of range: none of it is written (each counted).
  void DropLastGroup() {
    Group& g = group_[--groups_];
    iovUsed_ = g.first;
    counters_.txErrors += g.datagrams;
  }

  // Writes the packets gathered in group_/iovs_ (through the ring when it is on, by write() or
  // writev() otherwise, and one by one when the ring fails); datagrams written.
  uint32_t WriteRound() {
    const uint32_t n = groups_;
    groups_ = 0;
    iovUsed_ = 0;
    if (n == 0) return 0;
    uint32_t written = 0;
    if (uring_.on()) {
      for (uint32_t i = 0; i < n; i++) {
        firsts_[i] = group_[i].first;
        counts_[i] = group_[i].iovs;
      }
      if (uring_.Write(iovs_.data(), firsts_.data(), counts_.data(), n, res_.data())) {
        for (uint32_t i = 0; i < n; i++) written += Written(res_[i] >= 0 ? 0 : -res_[i], res_[i], group_[i].datagrams);
        return written;
      }
      // The ring failed and is closed; none of the round went out, so it goes by the syscalls.
      counters_.uringFailures++;
    }
    for (uint32_t i = 0; i < n; i++) written += WriteOne(&iovs_[group_[i].first], group_[i].iovs, group_[i].datagrams);
    return written;
  }

  bool WriteOne(const uint8_t* p, uint32_t len) {
    iovec iov{const_cast<uint8_t*>(p), len};
    return WriteOne(&iov, 1, 1) == 1;
  }

  // Writes one packet of `n` pieces that carries `datagrams` datagrams; how many went out.
  uint32_t WriteOne(const iovec* iov, uint32_t n, uint32_t datagrams) {
    if (fd_ < 0) {
      counters_.txErrors += datagrams;
      return 0;
    }
    for (;;) {
      ssize_t w = n == 1 ? write(fd_, iov[0].iov_base, iov[0].iov_len) : writev(fd_, iov, static_cast<int>(n));
      if (w < 0 && errno == EINTR) continue;
      return Written(w < 0 ? errno : 0, w, datagrams);
    }
  }

  // Counts one write's outcome (err: its errno, 0 when it went out) for the `datagrams` it
  // carried (more than one: a super-packet the datapath merged); how many went out.
  uint32_t Written(int err, ssize_t n, uint32_t datagrams) {
    if (err == 0) {
      counters_.txPackets += datagrams;
      counters_.txBytes += n;
      if (datagrams > 1) counters_.txGsoUdp++;
      return datagrams;
    }
    // A TUN write only fails when the kernel refuses the packet or its queue is full; the
    // packet is dropped and counted here (the caller counts it too).
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
      counters_.txFull += datagrams;
    else
      counters_.txErrors += datagrams;
    return 0;
  }

  // useUring(entries): batches through an io_uring of `entries` from now on; "" or why not (then
  // the syscalls stay). Called before start, on the thread that runs the device's loop.
  Napi::Value UseUring(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "useUring(entries)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const uint32_t entries = info[0].As<Napi::Number>().Uint32Value();
    if (entries == 0 || entries > 4096) {
      Napi::RangeError::New(env, "useUring: 1 to 4096 entries").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::String::New(env, "the TUN is closed");
    std::string why = uring_.Open(fd_, entries);
    if (why.empty()) {
      res_.assign(uring_.entries(), 0);
      SizeRounds(uring_.entries());
    }
    return Napi::String::New(env, why);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rxPackets", counters_.rxPackets);
    o.Set("rxBytes", counters_.rxBytes);
    o.Set("rxWakeups", counters_.rxWakeups);
    o.Set("rxBudgetHits", counters_.rxBudgetHits);
    o.Set("rxErrors", counters_.rxErrors);
    o.Set("rxBusyPolled", counters_.rxBusyPolled);
    o.Set("rxGsoTcp", counters_.rxGsoTcp);
    o.Set("rxGsoUdp", counters_.rxGsoUdp);
    o.Set("txPackets", counters_.txPackets);
    o.Set("txBytes", counters_.txBytes);
    o.Set("txQueueFull", counters_.txFull);
    o.Set("txErrors", counters_.txErrors);
    o.Set("txGsoUdp", counters_.txGsoUdp);
    o.Set("uringEnters", uring_.enters());
    o.Set("uringFailures", counters_.uringFailures);
    o.Set("uring", uring_.on() ? 1 : 0);
    return o;
  }

  // attachSteering(progFd): the device's queue-selection program (-1: none, the kernel's own
  // flow hash again). One queue's fd sets it for the whole device.
  Napi::Value AttachSteering(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "attachSteering(progFd)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int prog = info[0].As<Napi::Number>().Int32Value();
    if (fd_ < 0 || ioctl(fd_, TUNSETSTEERINGEBPF, &prog) < 0)
      Napi::Error::New(env, ErrnoText("TUNSETSTEERINGEBPF", fd_ < 0 ? EBADF : errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  // setPersist(on): TUNSETPERSIST. A persistent device (and the routes through it) outlives the
  // fd: `masq stop --keep-state` leaves it for the next run, which attaches and clears it.
  Napi::Value SetPersist(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || info.Length() < 1 || !info[0].IsBoolean()) {
      Napi::Error::New(env, "setPersist(on: boolean) on an open TUN").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (ioctl(fd_, TUNSETPERSIST, info[0].As<Napi::Boolean>().Value() ? 1UL : 0UL) < 0)
      Napi::Error::New(env, ErrnoText("TUNSETPERSIST", errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value Offloads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), offloads_); }

  void StopPolling() {
    if (poll_ == nullptr) return;
    for (size_t i = 0; i < g_started.size(); i++)
      if (g_started[i] == this) {
        g_started.erase(g_started.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    uv_poll_stop(poll_);
    // libuv frees nothing itself: the handle memory must outlive the close callback.
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
    if (!onBatch_.IsEmpty()) onBatch_.Reset();
    if (!bufRef_.IsEmpty()) bufRef_.Reset();
    if (!metaRef_.IsEmpty()) metaRef_.Reset();
    delete asyncContext_;
    asyncContext_ = nullptr;
    Unref();
  }

  void Shutdown() {
    StopPolling();
    uring_.Close();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  int fd_ = -1;
  bool vnetHdr_ = false;
  std::string name_;
  unsigned long offloads_ = 0;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference onBatch_;
  Napi::Reference<Napi::Uint8Array> bufRef_;
  Napi::Reference<Napi::Uint32Array> metaRef_;
  Napi::AsyncContext* asyncContext_ = nullptr;
  uint8_t* buf_ = nullptr;
  size_t bufLen_ = 0;
  uint32_t* meta_ = nullptr;
  size_t metaPairs_ = 0;
  uint32_t maxPacket_ = 0;
  uint32_t budget_ = 0;
  Counters counters_;
  // The io_uring path (off unless useUring succeeded): its ring, the results of a round, the
  // packets of a write round, and how many reads the next wake-up's first round asks for.
  static constexpr uint32_t kMinReadAhead = 4;
  masq::UringBatch uring_;
  std::vector<int32_t> res_;
  // A write round: its packets (each `iovs` pieces from iovs_[first], carrying `datagrams`), at
  // most the ring's entries of them (one on the syscalls, written as each next one comes).
  struct Group {
    uint32_t first, iovs, datagrams;
  };
  // Sized for the syscalls; SizeRounds resizes them for a ring.
  void SizeRounds(uint32_t packets) {
    group_.assign(packets, Group{0, 0, 0});
    firsts_.assign(packets, 0);
    counts_.assign(packets, 0);
    iovs_.assign(static_cast<size_t>(packets) * 4 + kMaxAppends + 1, iovec{nullptr, 0});
  }
  std::vector<Group> group_ = std::vector<Group>(1);
  std::vector<uint32_t> firsts_, counts_;
  std::vector<iovec> iovs_ = std::vector<iovec>(kMaxAppends + 1);
  uint32_t groups_ = 0, iovUsed_ = 0;
  uint32_t readAhead_ = kMinReadAhead;
};

// allocHugePages(bytes): a zeroed ArrayBuffer on 2 MiB-aligned memory advised for transparent
// huge pages. The flow tables are hundreds of MB read at random; with 4 KiB pages nearly every
// packet also misses the TLB (DPDK and VPP run on huge pages for the same reason). Where the
// kernel offers none, the memory is ordinary pages: correct either way.
Napi::Value AllocHugePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "allocHugePages(bytes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double want = info[0].As<Napi::Number>().DoubleValue();
  if (!(want >= 1) || want > 64.0 * 1024 * 1024 * 1024) {
    Napi::RangeError::New(env, "allocHugePages: bytes out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t bytes = static_cast<size_t>(want);
  const size_t huge = 2u << 20;
  const size_t len = (bytes + huge - 1) & ~(huge - 1);
  // Over-allocate by one huge page, then trim, so the start is 2 MiB-aligned.
  void* raw = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    Napi::Error::New(env, ErrnoText("mmap", errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uintptr_t start = (reinterpret_cast<uintptr_t>(raw) + huge - 1) & ~(static_cast<uintptr_t>(huge) - 1);
  size_t head = start - reinterpret_cast<uintptr_t>(raw);
  if (head > 0) munmap(raw, head);
  size_t tail = huge - head;
  if (tail > 0) munmap(reinterpret_cast<void*>(start + len), tail);
  madvise(reinterpret_cast<void*>(start), len, MADV_HUGEPAGE);
  size_t* mapped = new size_t(len);
  return Napi::ArrayBuffer::New(
      env, reinterpret_cast<void*>(start), bytes,
      [](Napi::Env, void* data, size_t* length) {
        munmap(data, *length);
        delete length;
      },
      mapped);
}

// udpSocketOnDevice(address, port, device): the fd of a UDP socket bound to address:port that
// receives only what arrives on `device` (SO_BINDTODEVICE), for node:dgram's bind({ fd }). A
// service for inside hosts (NAT-PMP, PCP) must not answer a packet that came in from outside
// with a forged inside source; node:dgram can neither bind to a device nor tell the arrival
// interface.
Napi::Value UdpSocketOnDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsString()) {
    Napi::TypeError::New(env, "udpSocketOnDevice(address, port, device)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string address = info[0].As<Napi::String>().Utf8Value();
  const uint32_t port = info[1].As<Napi::Number>().Uint32Value();
  const std::string device = info[2].As<Napi::String>().Utf8Value();
  // An IPv4 or an IPv6 address (the PCP server for IPv6 pinholes listens on the inside IPv6 address).
  sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t salen = 0;
  auto* sa4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* sa6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &sa4->sin_addr) == 1) {
    sa4->sin_family = AF_INET;
    sa4->sin_port = htons(static_cast<uint16_t>(port));
    salen = sizeof *sa4;
  } else if (inet_pton(AF_INET6, address.c_str(), &sa6->sin6_addr) == 1) {
    sa6->sin6_family = AF_INET6;
    sa6->sin6_port = htons(static_cast<uint16_t>(port));
    salen = sizeof *sa6;
  }
  if (port > 65535 || salen == 0 || device.empty() || device.size() >= IFNAMSIZ) {
    Napi::RangeError::New(env, "udpSocketOnDevice: bad address, port or device name").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Napi::Error::New(env, ErrnoText("socket", errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (ss.ss_family == AF_INET6) {
    int on = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  }
  const char* step = "SO_BINDTODEVICE";
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(), static_cast<socklen_t>(device.size() + 1)) == 0) {
    step = "bind";
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), salen) == 0) return Napi::Number::New(env, fd);
  }
  int err = errno;
  close(fd);
  Napi::Error::New(env, ErrnoText(step, err)).ThrowAsJavaScriptException();
  return env.Undefined();
}

// allowedCpus(): the CPUs the calling thread may run on (its affinity, as cgroups and taskset left it).
Napi::Value AllowedCpus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    Napi::Error::New(env, ErrnoText("sched_getaffinity", errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &set)) out.Set(n++, Napi::Number::New(env, cpu));
  return out;
}

// pinThread(cpu): the calling thread (JavaScript's, which runs the packet loop) runs on `cpu` only.
// Node's other threads (the libuv pool, V8's GC helpers) keep their affinity.
Napi::Value PinThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "pinThread(cpu)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int cpu = info[0].As<Napi::Number>().Int32Value();
  if (cpu < 0 || cpu >= CPU_SETSIZE) {
    Napi::RangeError::New(env, "pinThread: no such CPU").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    Napi::Error::New(env, ErrnoText("sched_setaffinity", errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return env.Undefined();
}

// setThreadRealtime(priority): the calling thread (the packet loop's) under SCHED_FIFO at
// `priority` (1-99), or back under SCHED_OTHER with 0; threads and processes it creates afterwards
// start under SCHED_OTHER. Returns 0 or the errno (EPERM without
// CAP_SYS_NICE; the caller says so and runs on). Only this thread: Node's others (the libuv pool,
// V8's GC helpers) keep theirs. The kernel's RT throttling (sched_rt_runtime_us) still leaves
// other tasks their share should the loop ever spin.
Napi::Value SetThreadRealtime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "setThreadRealtime(priority)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int prio = info[0].As<Napi::Number>().Int32Value();
  if (prio < 0 || prio > 99) {
    Napi::RangeError::New(env, "setThreadRealtime: priority 0 to 99").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct sched_param sp;
  memset(&sp, 0, sizeof sp);
  sp.sched_priority = prio;
  // pid 0: the calling thread (a Linux thread id), not the whole process. SCHED_RESET_ON_FORK:
  // what this thread starts later (the programs of the host plan, libuv's pool threads, workers)
  // begins under the ordinary scheduler; a worker's packet loop asks for itself.
  const int policy = prio > 0 ? (SCHED_FIFO | SCHED_RESET_ON_FORK) : SCHED_OTHER;
  const int rc = sched_setscheduler(0, policy, &sp);
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

// threadRealtimePriority(): the calling thread's SCHED_FIFO priority, 0 when it is not SCHED_FIFO.
Napi::Value ThreadRealtimePriority(const Napi::CallbackInfo& info) {
  struct sched_param sp;
  memset(&sp, 0, sizeof sp);
  const int policy = sched_getscheduler(0);
  if (policy < 0 || (policy & ~SCHED_RESET_ON_FORK) != SCHED_FIFO || sched_getparam(0, &sp) != 0)
    return Napi::Number::New(info.Env(), 0);
  return Napi::Number::New(info.Env(), sp.sched_priority);
}

// setBusyPoll(us): how long to keep reading the devices after their last packet (0: off).
Napi::Value SetBusyPoll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "setBusyPoll(us)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double us = info[0].As<Napi::Number>().DoubleValue();
  if (!(us >= 0) || us > 1000000) {
    Napi::RangeError::New(env, "setBusyPoll: 0 to 1000000 us").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  g_busyPollNs = static_cast<uint64_t>(us * 1000);
  return env.Undefined();
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("setBusyPoll", Napi::Function::New(env, SetBusyPoll));
  exports.Set("setThreadRealtime", Napi::Function::New(env, SetThreadRealtime));
  exports.Set("threadRealtimePriority", Napi::Function::New(env, ThreadRealtimePriority));
  exports.Set("allowedCpus", Napi::Function::New(env, AllowedCpus));
  exports.Set("pinThread", Napi::Function::New(env, PinThread));
  exports.Set("allocHugePages", Napi::Function::New(env, AllocHugePages));
  exports.Set("udpSocketOnDevice", Napi::Function::New(env, UdpSocketOnDevice));
  exports.Set("TUN_F_CSUM", TUN_F_CSUM);
  exports.Set("TUN_F_TSO4", TUN_F_TSO4);
  exports.Set("TUN_F_TSO6", TUN_F_TSO6);
  exports.Set("TUN_F_TSO_ECN", TUN_F_TSO_ECN);
  exports.Set("TUN_F_USO4", TUN_F_USO4);
  exports.Set("TUN_F_USO6", TUN_F_USO6);
  // The header's layout and values as this side has them, so the unit tests check that the
  // JavaScript side's copy (src/packet/virtio-net.ts) agrees.
  exports.Set("VIRTIO_NET_HDR_BYTES", static_cast<uint32_t>(VirtioNetHdr::kBytes));
  exports.Set("VIRTIO_NET_HDR_F_NEEDS_CSUM", VirtioNetHdr::kNeedsCsum);
  exports.Set("VIRTIO_NET_HDR_GSO_TCPV4", VirtioNetHdr::kGsoTcpV4);
  exports.Set("VIRTIO_NET_HDR_GSO_UDP_L4", VirtioNetHdr::kGsoUdpL4);
  exports.Set("WRITE_APPEND", kWriteAppend);
  exports.Set("WRITE_MAX_DATAGRAMS", kMaxAppends + 1);
  masq::InitNetlink(env, exports);
  masq::InitUnixDgram(env, exports);
  masq::InitSteering(env, exports);
  return Tun::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(masq_tun, InitAll)
