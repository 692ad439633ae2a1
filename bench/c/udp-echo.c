/*
 * UDP echo server: every datagram straight back to its sender, a batch at a time (recvmmsg,
 * then sendmmsg to the senders' addresses), so one process keeps up with the generators.
 * Several may share the port (SO_REUSEPORT). Prints "echo ready", then runs until killed.
 *
 * usage: udp-echo PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define VLEN 64
#define BUF 2048

int main(int argc, char **argv) {
  if (argc != 2) die_usage("udp-echo PORT");
  struct sockaddr_in me = addr_arg("0.0.0.0", argv[1]);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int one = 1, rcvbuf = 1 << 22;
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) < 0) {
    perror("udp-echo: bind");
    return 1;
  }
  static char bufs[VLEN][BUF];
  static struct iovec iov[VLEN];
  static struct sockaddr_in from[VLEN];
  static struct mmsghdr msgs[VLEN];
  printf("echo ready\n");
  fflush(stdout);
  for (;;) {
    for (int i = 0; i < VLEN; i++) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = BUF;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    /* Blocks for the first datagram, then takes whatever else is queued. */
    int n = recvmmsg(fd, msgs, VLEN, MSG_WAITFORONE, NULL);
    if (n <= 0) {
      if (errno == EINTR) continue;
      perror("udp-echo: recvmmsg");
      return 1;
    }
    for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
    /* A full socket buffer or an unreachable sender loses a reply; the client counts it. */
    for (int done = 0; done < n;) {
      int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
      done += r > 0 ? r : 1;
    }
  }
}
