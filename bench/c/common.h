/*
 * What the bench's C traffic programs share: a monotonic clock, their own CPU time (the figure
 * that shows whether a generator, not the path, was the limit) and argument parsing that refuses
 * nonsense instead of measuring it.
 */
#ifndef MASQ_BENCH_COMMON_H
#define MASQ_BENCH_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) this process has used. */
static inline double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static inline void die_usage(const char *usage) {
  fprintf(stderr, "usage: %s\n", usage);
  exit(2);
}

/* An IPv4 address and port, or exit 2 naming the bad one. */
static inline struct sockaddr_in addr_arg(const char *host, const char *port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  long p = strtol(port, NULL, 10);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || p < 0 || p > 65535) {
    fprintf(stderr, "bad address %s:%s\n", host, port);
    exit(2);
  }
  a.sin_port = htons((unsigned short)p);
  return a;
}

/* An integer argument within [lo, hi], or exit 2. */
static inline long int_arg(const char *s, const char *name, long lo, long hi) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "%s must be an integer %ld-%ld (got %s)\n", name, lo, hi, s);
    exit(2);
  }
  return v;
}

static inline double num_arg(const char *s, const char *name, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || !(v >= lo && v <= hi)) {
    fprintf(stderr, "%s must be a number %g-%g (got %s)\n", name, lo, hi, s);
    exit(2);
  }
  return v;
}

#endif
