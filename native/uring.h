// Batched TUN reads and writes through io_uring (uring.cc): a wake-up's reads, or a batch's
// writes, go to the kernel with one io_uring_enter instead of one read() or write() each.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <string>
#include <vector>

struct io_uring;

namespace masq {

class UringBatch {
 public:
  UringBatch() = default;
  ~UringBatch() { Close(); }
  UringBatch(const UringBatch&) = delete;
  UringBatch& operator=(const UringBatch&) = delete;

  /** Sets up a ring of `entries` for `fd`; "" or why it cannot be used (then it stays off). */
  std::string Open(int fd, unsigned entries);
  void Close();
  bool on() const { return ring_ != nullptr; }
  unsigned entries() const { return entries_; }
  /** io_uring_enter calls made (each moving a whole round of reads or writes). */
  double enters() const { return enters_; }

  /**
   * Reads up to `count` (≤ entries) packets into consecutive slots of `stride` bytes at `buf`,
   * each read without waiting (RWF_NOWAIT): res[i] is slot i's length or -errno (-EAGAIN: the
   * queue was empty). False when the ring failed; it is closed then and the caller falls back.
   */
  bool Read(uint8_t* buf, size_t stride, size_t maxLen, uint32_t count, int32_t* res);

  /**
   * Writes `count` (≤ entries) packets without waiting, packet i in pieces[i] pieces from
   * iovs[first[i]] (one: a write, more: a writev): res[i] is the bytes written or -errno. False
   * when the ring failed (closed then; nothing of this round was sent).
   */
  bool Write(const iovec* iovs, const uint32_t* first, const uint32_t* pieces, uint32_t count, int32_t* res);

 private:
  bool Run(uint32_t count, int32_t* res);

  io_uring* ring_ = nullptr;
  unsigned entries_ = 0;
  double enters_ = 0;
};

}  // namespace masq
