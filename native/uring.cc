// io_uring for the TUN's batches, with liburing (Debian's liburing-dev): the ring set-up and its
// memory mapping are liburing's, and what is left here is a round of SQEs and their CQEs.
//
// Every operation carries RWF_NOWAIT, so the kernel runs it inline during io_uring_enter and
// answers -EAGAIN rather than parking it (an empty queue on a read; a full socket on a write):
// no request outlives the call, so the buffers are JavaScript's again when it returns, and the
// packets of a round go out in order. TUN supports non-blocking kiocbs (FMODE_NOWAIT); a kernel
// whose TUN does not answers EOPNOTSUPP to the probe in Open and masq keeps the syscalls.
#include "uring.h"

#include <errno.h>
#include <liburing.h>
#include <string.h>

namespace masq {

namespace {
std::string Why(const char* what, int err) {
  return std::string(what) + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
}
}  // namespace

std::string UringBatch::Open(int fd, unsigned entries) {
  Close();
  auto* ring = new io_uring;
  io_uring_params p;
  memset(&p, 0, sizeof p);
  // One thread submits (the loop's), and completions are inline: no task work to interrupt it for.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
  int rc = io_uring_queue_init_params(entries, ring, &p);
  if (rc == -EINVAL) {
    // A kernel before 6.0 lacks the hints; they are only hints.
    memset(&p, 0, sizeof p);
    rc = io_uring_queue_init_params(entries, ring, &p);
  }
  if (rc < 0) {
    delete ring;
    std::string why = Why("io_uring_setup", -rc);
    if (rc == -EPERM) why += "; io_uring disabled (sysctl kernel.io_uring_disabled, or a seccomp filter)";
    if (rc == -ENOSYS) why += "; the kernel has no io_uring";
    return why;
  }
  // The TUN fd as the ring's fixed file 0: no file lookup and reference per operation.
  rc = io_uring_register_files(ring, &fd, 1);
  if (rc < 0) {
    io_uring_queue_exit(ring);
    delete ring;
    return Why("io_uring_register_files", -rc);
  }
  ring_ = ring;
  entries_ = entries;
  // The probe: a zero-byte non-blocking read, which TUN answers with 0 and consumes nothing.
  int32_t res = 0;
  uint8_t none = 0;
  if (!Read(&none, 0, 0, 1, &res)) return "io_uring_enter failed on the probe read";
  if (res < 0) {
    Close();
    return Why("a non-blocking io_uring read of the TUN", -res);
  }
  return "";
}

void UringBatch::Close() {
  if (ring_ == nullptr) return;
  io_uring_queue_exit(ring_);
  delete ring_;
  ring_ = nullptr;
}

bool UringBatch::Read(uint8_t* buf, size_t stride, size_t maxLen, uint32_t count, int32_t* res) {
  for (uint32_t i = 0; i < count; i++) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_);
    io_uring_prep_read(sqe, 0, buf + i * stride, static_cast<unsigned>(maxLen), 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->rw_flags = RWF_NOWAIT;
    sqe->user_data = i;
  }
  return Run(count, res);
}

bool UringBatch::Write(const iovec* iovs, const uint32_t* first, const uint32_t* pieces, uint32_t count, int32_t* res) {
  for (uint32_t i = 0; i < count; i++) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_);
    const iovec* v = iovs + first[i];
    if (pieces[i] == 1)
      io_uring_prep_write(sqe, 0, v->iov_base, static_cast<unsigned>(v->iov_len), 0);
    else
      io_uring_prep_writev(sqe, 0, v, pieces[i], 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->rw_flags = RWF_NOWAIT;
    sqe->user_data = i;
  }
  return Run(count, res);
}

// Submits the round and collects its `count` completions (all inline, see the top).
bool UringBatch::Run(uint32_t count, int32_t* res) {
  int rc;
  do {
    enters_++;
    rc = io_uring_submit_and_wait(ring_, count);
  } while (rc == -EINTR);
  if (rc != static_cast<int>(count)) {
    // Not taken whole (or an error): give the ring up rather than leave SQEs behind in it for a
    // later round. What was taken ran inline (RWF_NOWAIT), so nothing writes into a buffer later.
    Close();
    return false;
  }
  uint32_t seen = 0;
  while (seen < count) {
    io_uring_cqe* cqe = nullptr;
    int w = io_uring_wait_cqe(ring_, &cqe);
    if (w == -EINTR) continue;
    if (w < 0) {
      Close();
      return false;
    }
    uint64_t i = cqe->user_data;
    if (i < count) res[i] = cqe->res;
    io_uring_cqe_seen(ring_, cqe);
    seen++;
  }
  return true;
}

}  // namespace masq
