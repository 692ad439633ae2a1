/*
 * UDP round trips: COUNT small requests to an echo server at HOST:PORT, one at a time, each
 * INTERVAL_US after the previous one was sent (or at once, when its reply took longer), each
 * timed from send to its own reply (a sequence number in the payload; a late reply to an
 * earlier request is skipped). A request unanswered within TIMEOUT_MS is lost.
 * Prints {"sent","lost","cpu","wall","rtt_us":[...]} (every answered request's RTT, in order).
 *
 * usage: udp-rtt HOST PORT COUNT INTERVAL_US TIMEOUT_MS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define PLEN 32

int main(int argc, char **argv) {
  if (argc != 6) die_usage("udp-rtt HOST PORT COUNT INTERVAL_US TIMEOUT_MS");
  struct sockaddr_in dst = addr_arg(argv[1], argv[2]);
  long count = int_arg(argv[3], "COUNT", 1, 1000000);
  double interval = (double)int_arg(argv[4], "INTERVAL_US", 0, 1000000) / 1e6;
  double timeout = (double)int_arg(argv[5], "TIMEOUT_MS", 1, 60000) / 1e3;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
    perror("udp-rtt: socket");
    return 1;
  }
  double *rtt = calloc((size_t)count, sizeof *rtt);
  if (!rtt) return 1;
  long answered = 0, lost = 0;
  uint8_t req[PLEN], rep[2048];
  memset(req, 'r', sizeof req);
  double t0 = now_s(), c0 = cpu_s();
  double next = t0;
  for (long seq = 0; seq < count; seq++) {
    for (double t = now_s(); t < next; t = now_s()) {
      double d = next - t;
      struct timespec ts = {.tv_sec = (time_t)d, .tv_nsec = (long)((d - (double)(time_t)d) * 1e9)};
      nanosleep(&ts, NULL);
    }
    memcpy(req, &seq, sizeof seq);
    double sent = now_s();
    next = sent + interval;
    if (send(fd, req, sizeof req, 0) != (ssize_t)sizeof req) {
      lost++;
      continue;
    }
    for (;;) {
      double left = sent + timeout - now_s();
      if (left <= 0) {
        lost++;
        break;
      }
      struct pollfd p = {.fd = fd, .events = POLLIN};
      int pr = poll(&p, 1, (int)(left * 1000) + 1);
      if (pr < 0 && errno != EINTR) return 1;
      if (pr <= 0) continue;
      ssize_t n = recv(fd, rep, sizeof rep, MSG_DONTWAIT);
      double t = now_s();
      long got;
      if (n < (ssize_t)sizeof got) continue; /* an ICMP error surfaced as ECONNREFUSED: wait on */
      memcpy(&got, rep, sizeof got);
      if (got != seq) continue;
      rtt[answered++] = (t - sent) * 1e6;
      break;
    }
  }
  printf("{\"sent\":%ld,\"lost\":%ld,\"cpu\":%.4f,\"wall\":%.4f,\"rtt_us\":[", count, lost, cpu_s() - c0, now_s() - t0);
  for (long i = 0; i < answered; i++) printf("%s%.1f", i ? "," : "", rtt[i]);
  printf("]}\n");
  return 0;
}
