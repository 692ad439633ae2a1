/*
 * UDP blaster: PAYLOAD-byte datagrams to HOST:PORT for SECONDS on one connected socket,
 * sendmmsg sending VLEN per system call, so the generator costs little next to the path under
 * test. A full socket buffer (ENOBUFS, EAGAIN) is retried, not counted as sent.
 * Prints {"sent","errors","mmsg":true,"cpu","wall"} (cpu: its own CPU seconds over wall).
 *
 * usage: udp-blast HOST PORT SECONDS PAYLOAD VLEN
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define MAX_VLEN 1024

int main(int argc, char **argv) {
  if (argc != 6) die_usage("udp-blast HOST PORT SECONDS PAYLOAD VLEN");
  struct sockaddr_in dst = addr_arg(argv[1], argv[2]);
  double seconds = num_arg(argv[3], "SECONDS", 0.001, 3600);
  int plen = (int)int_arg(argv[4], "PAYLOAD", 0, 1472);
  int vlen = (int)int_arg(argv[5], "VLEN", 1, MAX_VLEN);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
    perror("udp-blast: socket");
    return 1;
  }
  static char payload[1472];
  memset(payload, 'm', sizeof payload);
  static struct iovec iov;
  static struct mmsghdr msgs[MAX_VLEN];
  iov.iov_base = payload;
  iov.iov_len = (size_t)plen;
  for (int i = 0; i < vlen; i++) {
    msgs[i].msg_hdr.msg_iov = &iov;
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  long sent = 0, errors = 0;
  double t0 = now_s(), c0 = cpu_s();
  double end = t0 + seconds;
  /* The clock is read once per batch: a batch takes microseconds. */
  while (now_s() < end) {
    int r = sendmmsg(fd, msgs, (unsigned)vlen, 0);
    if (r > 0)
      sent += r;
    else if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
      errors++;
  }
  printf("{\"sent\":%ld,\"errors\":%ld,\"mmsg\":true,\"cpu\":%.4f,\"wall\":%.4f}\n", sent, errors, cpu_s() - c0,
         now_s() - t0);
  return 0;
}
