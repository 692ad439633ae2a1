/*
 * New-flow generator: COUNT UDP requests from source ports FIRST, FIRST+1, ... (one per port, so
 * every request opens a new flow at the gateway) to DST at ports DPORT ... DPORT+DPORTS-1 in turn
 * (several destinations, as real traffic has: a NAT that keeps per-destination port spaces, like
 * the kernel's, would otherwise run short of ports to one destination), at most WINDOW unanswered at a
 * time (closed loop: the rate is what the path sustains, not what a queue drops). The requests
 * go out through a raw socket (IP_HDRINCL; the kernel fills in the IP checksum and id) by
 * sendmmsg, all built before the clock starts, so a fresh source port costs no socket. Replies
 * are read by recvmmsg on a raw UDP socket (no socket is bound to their ports; the bench's
 * nftables rule keeps the kernel from answering them with port-unreachable errors). When
 * nothing comes back for 50 ms the outstanding requests count as lost. Waits until the
 * wall-clock time START_AT so the generators start together; gives up after MAX_S.
 * Prints {"sent","got","t0","t1","timedOut","cpu","wall"} (t0 first request, t1 last reply,
 * epoch seconds; cpu: its own CPU seconds from t0 to its end; wall: the seconds in between).
 *
 * usage: flow-gen SRC DST DPORT DPORTS FIRST COUNT WINDOW START_AT MAX_S
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define VLEN 32
#define RVLEN 64
#define PAYLOAD "flow"
#define PLEN 4
#define ULEN (8 + PLEN)
#define TOT (20 + ULEN)

static uint32_t sum16(const uint8_t *b, int n) {
  uint32_t s = 0;
  for (int i = 0; i + 1 < n; i += 2) s += (uint32_t)(b[i] << 8 | b[i + 1]);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 10) die_usage("flow-gen SRC DST DPORT DPORTS FIRST COUNT WINDOW START_AT MAX_S");
  struct sockaddr_in src = addr_arg(argv[1], "0");
  struct sockaddr_in dst = addr_arg(argv[2], argv[3]);
  int dport = ntohs(dst.sin_port);
  long dports = int_arg(argv[4], "DPORTS", 1, 65536 - dport);
  long first = int_arg(argv[5], "FIRST", 1, 65535);
  long count = int_arg(argv[6], "COUNT", 0, 65535);
  long window = int_arg(argv[7], "WINDOW", 1, 65535);
  double start_at = num_arg(argv[8], "START_AT", 0, 1e12);
  double max_s = num_arg(argv[9], "MAX_S", 0.001, 3600);
  long total = first + count > 65536 ? 65536 - first : count;

  int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  int rs = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_UDP);
  if (s < 0 || rs < 0) {
    perror("flow-gen: raw socket");
    return 1;
  }
  int big = 1 << 22;
  setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(rs, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  struct sockaddr_in to = dst;
  to.sin_port = 0;
  if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) {
    perror("flow-gen: connect");
    return 1;
  }

  /* Every request, built in advance: a fixed header and a checksum per source port. */
  uint8_t *pkts = calloc((size_t)(total > 0 ? total : 1), TOT);
  struct iovec *iovs = calloc((size_t)(total > 0 ? total : 1), sizeof *iovs);
  struct mmsghdr *msgs = calloc((size_t)(total > 0 ? total : 1), sizeof *msgs);
  if (!pkts || !iovs || !msgs) return 1;
  uint8_t tmpl[TOT] = {0x45, 0, 0, TOT, 0, 0, 0, 0, 64, IPPROTO_UDP};
  memcpy(tmpl + 12, &src.sin_addr, 4);
  memcpy(tmpl + 16, &dst.sin_addr, 4);
  tmpl[25] = ULEN;
  memcpy(tmpl + 28, PAYLOAD, PLEN);
  /* UDP checksum without the ports: pseudo-header + length + payload. */
  uint32_t base = sum16(tmpl + 12, 8) + IPPROTO_UDP + ULEN + ULEN + sum16(tmpl + 28, PLEN);
  for (long i = 0; i < total; i++) {
    uint8_t *p = pkts + i * TOT;
    uint32_t port = (uint32_t)(first + i);
    uint32_t to_port = (uint32_t)(dport + i % dports);
    memcpy(p, tmpl, TOT);
    p[20] = (uint8_t)(port >> 8);
    p[21] = (uint8_t)port;
    p[22] = (uint8_t)(to_port >> 8);
    p[23] = (uint8_t)to_port;
    uint32_t c = base + port + to_port;
    c = (c & 0xffff) + (c >> 16);
    c = (c & 0xffff) + (c >> 16);
    c = ~c & 0xffff;
    if (c == 0) c = 0xffff;
    p[26] = (uint8_t)(c >> 8);
    p[27] = (uint8_t)c;
    iovs[i].iov_base = p;
    iovs[i].iov_len = TOT;
    msgs[i].msg_hdr.msg_iov = &iovs[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  static uint8_t rbufs[RVLEN][2048];
  static struct iovec riov[RVLEN];
  static struct mmsghdr rmsgs[RVLEN];
  for (int i = 0; i < RVLEN; i++) {
    riov[i].iov_base = rbufs[i];
    riov[i].iov_len = sizeof rbufs[i];
    rmsgs[i].msg_hdr.msg_iov = &riov[i];
    rmsgs[i].msg_hdr.msg_iovlen = 1;
  }

  double wait = start_at - wall_s();
  if (wait > 0 && wait < 30) usleep((useconds_t)(wait * 1e6));
  double t0 = wall_s(), t1 = t0, last = now_s();
  double mono0 = now_s(), c0 = cpu_s();
  double deadline = mono0 + max_s;
  long i = 0, got = 0, lost = 0;
  int timed_out = 0;
  for (;;) {
    double t = now_s();
    if (t >= deadline) {
      timed_out = 1;
      break;
    }
    long out = i - got - lost;
    if (i < total && out < window) {
      long k = window - out;
      if (k > VLEN) k = VLEN;
      if (k > total - i) k = total - i;
      int r = sendmmsg(s, msgs + i, (unsigned)k, 0);
      if (r > 0)
        i += r;
      else if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
        perror("flow-gen: sendmmsg");
        return 1;
      }
    }
    long n = 0;
    for (;;) {
      int r = recvmmsg(rs, rmsgs, RVLEN, MSG_DONTWAIT, NULL);
      if (r <= 0) break;
      for (int k = 0; k < r; k++) {
        const uint8_t *b = rbufs[k];
        int hl = (b[0] & 0xf) * 4;
        /* Replies from the echo ports only (the raw socket sees every UDP datagram). */
        if (rmsgs[k].msg_len < (unsigned)(hl + 8)) continue;
        long from = (long)(b[hl] << 8 | b[hl + 1]);
        if (from >= dport && from < dport + dports) n++;
      }
      if (r < RVLEN) break;
    }
    if (n) {
      got += n;
      t1 = wall_s();
      last = now_s();
    } else if (i >= total || out >= window) {
      if (i >= total && i - got - lost <= 0) break;
      struct pollfd pfd = {.fd = rs, .events = POLLIN};
      poll(&pfd, 1, 5);
      if (now_s() - last > 0.05) {
        lost = i - got;
        last = now_s();
      }
    }
  }
  printf("{\"sent\":%ld,\"got\":%ld,\"t0\":%.6f,\"t1\":%.6f,\"timedOut\":%s,\"cpu\":%.4f,\"wall\":%.4f}\n", i, got, t0,
         t1, timed_out ? "true" : "false", cpu_s() - c0, now_s() - mono0);
  return 0;
}
