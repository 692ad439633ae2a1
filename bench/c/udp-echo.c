/*
 * UDP echo server: every datagram straight back to its sender, a batch at a time (recvmmsg,
 * then sendmmsg to the senders' addresses), so one process keeps up with the generators.
 * Listens on COUNT consecutive ports from PORT (default 1); several may share them
 * (SO_REUSEPORT). One port blocks in recvmmsg (the latency test: no extra wake-up step); more
 * are watched with epoll. Prints "echo ready", then runs until killed.
 *
 * usage: udp-echo PORT [COUNT]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define VLEN 64
#define BUF 2048
#define MAX_PORTS 256

static char bufs[VLEN][BUF];
static struct iovec iov[VLEN];
static struct sockaddr_in from[VLEN];
static struct mmsghdr msgs[VLEN];

static int open_port(int port) {
  char text[8];
  snprintf(text, sizeof text, "%d", port);
  struct sockaddr_in me = addr_arg("0.0.0.0", text);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int one = 1, rcvbuf = 1 << 22;
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) return -1;
  return fd;
}

/* Echoes one batch from fd: returns the datagrams read, 0 when none was queued, -1 on error. */
static int echo_batch(int fd, int flags) {
  for (int i = 0; i < VLEN; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = BUF;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
  }
  int n = recvmmsg(fd, msgs, VLEN, flags, NULL);
  if (n <= 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
  /* A full socket buffer or an unreachable sender loses a reply; the client counts it. */
  for (int done = 0; done < n;) {
    int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
    done += r > 0 ? r : 1;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) die_usage("udp-echo PORT [COUNT]");
  long port = int_arg(argv[1], "PORT", 1, 65535);
  long count = argc == 3 ? int_arg(argv[2], "COUNT", 1, MAX_PORTS) : 1;
  if (port + count - 1 > 65535) die_usage("udp-echo PORT [COUNT]: the ports end above 65535");
  int fds[MAX_PORTS];
  for (long i = 0; i < count; i++) {
    fds[i] = open_port((int)(port + i));
    if (fds[i] < 0) {
      perror("udp-echo: bind");
      return 1;
    }
  }
  if (count == 1) {
    /* Blocking again: waits for the first datagram, then takes whatever else is queued. */
    int fl = fcntl(fds[0], F_GETFL);
    if (fl < 0 || fcntl(fds[0], F_SETFL, fl & ~O_NONBLOCK) < 0) {
      perror("udp-echo: fcntl");
      return 1;
    }
    printf("echo ready\n");
    fflush(stdout);
    for (;;)
      if (echo_batch(fds[0], MSG_WAITFORONE) < 0) {
        perror("udp-echo: recvmmsg");
        return 1;
      }
  }
  int ep = epoll_create1(0);
  for (long i = 0; i < count; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
      perror("udp-echo: epoll");
      return 1;
    }
  }
  printf("echo ready\n");
  fflush(stdout);
  struct epoll_event ready[MAX_PORTS];
  for (;;) {
    int n = epoll_wait(ep, ready, MAX_PORTS, -1);
    if (n < 0 && errno != EINTR) {
      perror("udp-echo: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int r;
      while ((r = echo_batch(ready[i].data.fd, MSG_DONTWAIT)) == VLEN) {
      }
      if (r < 0) {
        perror("udp-echo: recvmmsg");
        return 1;
      }
    }
  }
}
