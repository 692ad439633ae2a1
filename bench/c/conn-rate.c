/*
 * Short connections as fast as they complete: CONCURRENCY HTTP/1.0 requests in flight (no
 * keep-alive: the server closes after each response), each on a new TCP connection, for SECONDS.
 * A connection counts as completed when the server's response starts with status 200 and ends
 * with the server's close; every other end is a failure with its reason, including connections
 * that get no answer within TIMEOUT_MS (a dropped SYN the client would retransmit for minutes),
 * which ab and wrk never count as failed. Prints one JSON object.
 *
 * Why not ab (apache2-utils): it counts a refused connection as three failures, leaves hung
 * connections out of its figures, and aborts the whole run when no connection moves for its -s
 * timeout. Why not wrk with "Connection: close": it counts a hung connection as a timeout again
 * every two seconds and never replaces it.
 *
 * usage: conn-rate HOST PORT PATH CONCURRENCY SECONDS TIMEOUT_MS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE, CONNECTING, READING };

struct slot {
  int fd;
  enum state state;
  double start;
  /* The first bytes of the response, enough for the status code. */
  char head[16];
  size_t head_len;
};

struct counts {
  long completed, refused, unreachable, reset, timeout_connect, timeout_response, bad_response;
  /* The client's own failures (no local port, no memory): the generator's limit, not the path's. */
  long local;
  long other, unfinished;
  long first_failure_after;
  double first_failure_at;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct counts c = {.first_failure_after = -1, .first_failure_at = -1};
static double t0;

static void failed(long *reason, double t) {
  (*reason)++;
  if (c.first_failure_after < 0) {
    c.first_failure_after = c.completed;
    c.first_failure_at = t - t0;
  }
}

static void classify(int err, enum state st, double t) {
  switch (err) {
    case ECONNREFUSED:
      failed(&c.refused, t);
      break;
    case EHOSTUNREACH:
    case ENETUNREACH:
      failed(&c.unreachable, t);
      break;
    case ECONNRESET:
    case EPIPE:
      failed(st == CONNECTING ? &c.refused : &c.reset, t);
      break;
    case ETIMEDOUT:
      failed(&c.timeout_connect, t);
      break;
    default:
      failed(&c.other, t);
  }
}

static void finish(int ep, struct slot *s) {
  epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
  close(s->fd);
  s->fd = -1;
  s->state = IDLE;
}

/* Opens a connection in slot s; false when the client itself could not (counted as local). */
static int start(int ep, struct slot *s, const struct sockaddr_in *dst, double t) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    failed(&c.local, t);
    return 0;
  }
  s->fd = fd;
  s->start = t;
  s->head_len = 0;
  s->state = CONNECTING;
  if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    s->fd = -1;
    s->state = IDLE;
    if (err == EADDRNOTAVAIL || err == ENOBUFS || err == ENOMEM || err == EAGAIN)
      failed(&c.local, t);
    else
      classify(err, CONNECTING, t);
    return 0;
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: conn-rate HOST PORT PATH CONCURRENCY SECONDS TIMEOUT_MS\n");
    return 2;
  }
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
    fprintf(stderr, "conn-rate: bad address %s\n", argv[1]);
    return 2;
  }
  int conc = atoi(argv[4]);
  double seconds = atof(argv[5]);
  double timeout = atof(argv[6]) / 1000.0;
  if (conc < 1 || conc > 10000 || !(seconds > 0) || seconds > 3600 || !(timeout > 0)) {
    fprintf(stderr, "conn-rate: concurrency 1-10000, seconds 0-3600, timeout > 0\n");
    return 2;
  }
  char req[512];
  int req_len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: masq-bench\r\n\r\n",
                         argv[3], argv[1]);
  if (req_len <= 0 || (size_t)req_len >= sizeof req) return 2;

  int buckets = (int)seconds + 1;
  long *per_second = calloc((size_t)buckets, sizeof *per_second);
  struct slot *slots = calloc((size_t)conc, sizeof *slots);
  struct epoll_event *evs = calloc((size_t)conc, sizeof *evs);
  if (!per_second || !slots || !evs) return 1;
  for (int i = 0; i < conc; i++) slots[i].fd = -1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("epoll_create1");
    return 1;
  }

  static char buf[1 << 16];
  t0 = now_s();
  double end = t0 + seconds;
  double last_sweep = t0;
  for (;;) {
    double t = now_s();
    if (t >= end) break;
    int idle = 0;
    for (int i = 0; i < conc; i++)
      if (slots[i].state == IDLE && !start(ep, &slots[i], &dst, t)) idle = 1;
    /* A slot the client could not fill is retried after a millisecond, not in a busy loop. */
    int n = epoll_wait(ep, evs, conc, idle ? 1 : 10);
    t = now_s();
    for (int k = 0; k < n; k++) {
      struct slot *s = evs[k].data.ptr;
      if (s->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          classify(err, CONNECTING, t);
          finish(ep, s);
          continue;
        }
        /* The request fits any socket buffer: one write. */
        if (write(s->fd, req, (size_t)req_len) != req_len) {
          classify(errno, READING, t);
          finish(ep, s);
          continue;
        }
        s->state = READING;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        continue;
      }
      if (s->state != READING) continue;
      for (;;) {
        ssize_t r = read(s->fd, buf, sizeof buf);
        if (r > 0) {
          size_t take = sizeof s->head - s->head_len;
          if ((size_t)r < take) take = (size_t)r;
          memcpy(s->head + s->head_len, buf, take);
          s->head_len += take;
          continue;
        }
        if (r == 0) {
          /* "HTTP/1.x 200 ": the status code sits at bytes 9-11. */
          if (s->head_len >= 12 && memcmp(s->head, "HTTP/1.", 7) == 0 && memcmp(s->head + 9, "200", 3) == 0) {
            c.completed++;
            int b = (int)(t - t0);
            if (b >= 0 && b < buckets) per_second[b]++;
          } else {
            failed(&c.bad_response, t);
          }
          finish(ep, s);
        } else if (errno != EAGAIN) {
          classify(errno, READING, t);
          finish(ep, s);
        }
        break;
      }
    }
    if (t - last_sweep >= 0.01) {
      last_sweep = t;
      for (int i = 0; i < conc; i++) {
        struct slot *s = &slots[i];
        if (s->state != IDLE && t - s->start > timeout) {
          failed(s->state == CONNECTING ? &c.timeout_connect : &c.timeout_response, t);
          finish(ep, s);
        }
      }
    }
  }
  double elapsed = now_s() - t0;
  for (int i = 0; i < conc; i++)
    if (slots[i].state != IDLE) {
      c.unfinished++;
      finish(ep, &slots[i]);
    }

  printf(
      "{\"completed\":%ld,\"refused\":%ld,\"unreachable\":%ld,\"reset\":%ld,\"timeout_connect\":%ld,"
      "\"timeout_response\":%ld,\"bad_response\":%ld,\"local\":%ld,\"other\":%ld,\"unfinished\":%ld,"
      "\"seconds\":%.3f,\"first_failure_after\":%ld,\"first_failure_at_s\":%.3f,\"per_second\":[",
      c.completed, c.refused, c.unreachable, c.reset, c.timeout_connect, c.timeout_response, c.bad_response,
      c.local, c.other, c.unfinished, elapsed, c.first_failure_after, c.first_failure_at);
  for (int b = 0; b < (int)seconds; b++) printf("%s%ld", b ? "," : "", per_second[b]);
  printf("]}\n");
  return 0;
}
