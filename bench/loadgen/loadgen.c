/*
 * loadgen: a small HTTP/1.1 load generator for `inferpool bench overhead`.
 *
 * Why not wrk or h2load: both are closed loop only. Measuring a proxy's added latency needs an
 * open loop (requests sent at fixed times whether or not earlier ones finished, latency counted
 * from the intended send time, so queueing inside the proxy shows) and per-chunk timing of
 * streamed answers against send stamps the backend writes into each SSE event.
 *
 * One thread, epoll, non-blocking keep-alive connections spread round robin over the targets,
 * one request in flight per connection (no pipelining). Plain C, libc only.
 *
 *   loadgen --target 127.0.0.1:8000 [--target HOST:PORT ...] --body '{"model":"m"}'
 *           --mode open --rate 1000 --duration 5 [--connections 64]
 *   loadgen --target ... --mode closed --connections 32 --duration 5
 *
 * Prints one JSON object (see print_results) on stdout. Connection errors, resets, timeouts and
 * unparseable answers are counted, never fatal.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 16
#define MAX_HEADERS 16
#define HEADER_BUF 16384
#define SSE_LINE_MAX 4096
#define READ_BUF 65536
#define TIMER_ID UINT32_MAX
#define HOUSEKEEPING_NS 10000000LL /* timeouts and reconnects are checked every 10 ms */
#define RECONNECT_BACKOFF_NS 20000000LL

/* ---------------------------------------------------------------- small helpers */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t real_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

typedef struct {
    int64_t *v;
    size_t n, cap;
} vec_t;

static void vec_push(vec_t *vec, int64_t x) {
    if (vec->n == vec->cap) {
        vec->cap = vec->cap ? vec->cap * 2 : 4096;
        vec->v = realloc(vec->v, vec->cap * sizeof(int64_t));
        if (!vec->v) die("out of memory");
    }
    vec->v[vec->n++] = x;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted vector, in ms. */
static double pct_ms(const vec_t *sorted, double q) {
    if (sorted->n == 0) return 0.0;
    size_t rank = (size_t)ceil(q / 100.0 * (double)sorted->n);
    if (rank < 1) rank = 1;
    if (rank > sorted->n) rank = sorted->n;
    return (double)sorted->v[rank - 1] / 1e6;
}

/* ---------------------------------------------------------------- configuration */

typedef struct {
    char host[256];
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *request;
    size_t request_len;
} target_t;

typedef struct {
    target_t targets[MAX_TARGETS];
    int ntargets;
    const char *path;
    const char *method;
    char *body;
    const char *headers[MAX_HEADERS];
    int nheaders;
    int open_loop;
    double rate;
    double duration_s;
    int connections;
    double timeout_s;
    double drain_s;
    double connect_wait_s;
    int poisson;
    unsigned seed;
    char stamp_key[64]; /* e.g. "ts": searched in each SSE data line */
} config_t;

/* ---------------------------------------------------------------- per connection */

enum cstate { C_DOWN, C_CONNECTING, C_IDLE, C_WRITING, C_READING };
enum phase { P_HEADERS, P_BODY_LENGTH, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_END, P_TRAILERS, P_BODY_UNTIL_CLOSE };

typedef struct {
    int fd;
    int target;
    enum cstate state;
    int64_t retry_at;   /* when DOWN: reconnect at this time */
    int64_t intended;   /* the request's intended send time (open loop) or actual send time */
    int64_t deadline;   /* the request's timeout */
    size_t written;
    /* response parsing */
    enum phase phase;
    char head[HEADER_BUF];
    size_t head_len;
    int status;
    int64_t remaining;
    int close_after;
    int sse;
    char line[256]; /* chunk-size and trailer lines */
    size_t line_len;
    char sse_line[SSE_LINE_MAX];
    size_t sse_len;
} conn_t;

/* ---------------------------------------------------------------- results */

typedef struct {
    int64_t scheduled, sent, completed, ok, unsent;
    int64_t err_connect, err_io, err_timeout, err_parse;
    int64_t status[600];
    int64_t events, chunks;
    int64_t max_pending; /* open loop: most requests due but waiting for a free connection */
    vec_t latency;       /* ns, ok answers only */
    vec_t chunk_delay;   /* ns, receive time minus the backend's stamp */
} results_t;

typedef struct {
    config_t cfg;
    conn_t *conns;
    int epfd, timerfd;
    int *idle; /* stack of idle connection indices */
    int nidle;
    int in_flight;
    int64_t *schedule; /* open loop: intended send times */
    int64_t next_request;
    int64_t start, end_of_sending, hard_stop;
    int64_t last_housekeeping;
    results_t res;
} loadgen_t;

static void conn_open(loadgen_t *lg, int i, int64_t now);

static void idle_push(loadgen_t *lg, int i) {
    lg->conns[i].state = C_IDLE;
    lg->idle[lg->nidle++] = i;
}

static void idle_remove(loadgen_t *lg, int i) {
    for (int k = 0; k < lg->nidle; k++) {
        if (lg->idle[k] == i) {
            lg->idle[k] = lg->idle[--lg->nidle];
            return;
        }
    }
}

static void epoll_set(loadgen_t *lg, int i, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)i};
    if (epoll_ctl(lg->epfd, op, lg->conns[i].fd, &ev) < 0 && op != EPOLL_CTL_DEL) die("epoll_ctl failed");
}

/* Close a connection; if it carried a request, that request failed (counted by the caller). */
static void conn_close(loadgen_t *lg, int i, int64_t reconnect_at) {
    conn_t *c = &lg->conns[i];
    if (c->state == C_IDLE) idle_remove(lg, i);
    if (c->state == C_WRITING || c->state == C_READING) lg->in_flight--;
    if (c->fd >= 0) close(c->fd); /* close() also drops it from the epoll set */
    c->fd = -1;
    c->state = C_DOWN;
    c->retry_at = reconnect_at;
}

/* A request that got no complete answer: counted under `counter`, never as completed. */
static void fail_request(loadgen_t *lg, int i, int64_t *counter, int64_t now) {
    (*counter)++;
    conn_close(lg, i, now + RECONNECT_BACKOFF_NS);
}

static void conn_open(loadgen_t *lg, int i, int64_t now) {
    conn_t *c = &lg->conns[i];
    target_t *t = &lg->cfg.targets[c->target];
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        lg->res.err_connect++;
        c->retry_at = now + RECONNECT_BACKOFF_NS;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    if (connect(fd, (struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS) {
        lg->res.err_connect++;
        close(fd);
        c->fd = -1;
        c->retry_at = now + RECONNECT_BACKOFF_NS;
        return;
    }
    c->state = C_CONNECTING;
    epoll_set(lg, i, EPOLLOUT, EPOLL_CTL_ADD);
}

static void reset_parser(conn_t *c) {
    c->phase = P_HEADERS;
    c->head_len = 0;
    c->status = 0;
    c->remaining = 0;
    c->close_after = 0;
    c->sse = 0;
    c->line_len = 0;
    c->sse_len = 0;
}

/* Try to write the rest of the request; on EAGAIN wait for EPOLLOUT. */
static void conn_write(loadgen_t *lg, int i, int64_t now) {
    conn_t *c = &lg->conns[i];
    target_t *t = &lg->cfg.targets[c->target];
    while (c->written < t->request_len) {
        ssize_t n = send(c->fd, t->request + c->written, t->request_len - c->written, MSG_NOSIGNAL);
        if (n > 0) {
            c->written += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->state = C_WRITING;
            epoll_set(lg, i, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            fail_request(lg, i, &lg->res.err_io, now);
            return;
        }
    }
    if (c->state == C_WRITING) epoll_set(lg, i, EPOLLIN, EPOLL_CTL_MOD);
    c->state = C_READING;
}

static void send_request(loadgen_t *lg, int i, int64_t intended, int64_t now) {
    conn_t *c = &lg->conns[i];
    reset_parser(c);
    c->intended = intended;
    c->deadline = now + (int64_t)(lg->cfg.timeout_s * 1e9);
    c->written = 0;
    c->state = C_READING; /* conn_write switches to C_WRITING when it must wait */
    lg->in_flight++;
    lg->res.sent++;
    conn_write(lg, i, now);
}

/* ---------------------------------------------------------------- response parsing */

static void sse_line_done(loadgen_t *lg, conn_t *c, int64_t recv_real) {
    if (c->sse_len >= 5 && memcmp(c->sse_line, "data:", 5) == 0) {
        lg->res.events++;
        size_t keylen = strlen(lg->cfg.stamp_key);
        char *at = memmem(c->sse_line, c->sse_len, lg->cfg.stamp_key, keylen);
        if (at) {
            char *p = at + keylen, *end = c->sse_line + c->sse_len;
            while (p < end && (*p == ' ' || *p == '"')) p++;
            int64_t stamp = 0;
            int digits = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                stamp = stamp * 10 + (*p++ - '0');
                digits++;
            }
            if (digits > 0) {
                lg->res.chunks++;
                vec_push(&lg->res.chunk_delay, recv_real - stamp);
            }
        }
    }
    c->sse_len = 0;
}

/* Body bytes of one answer: scanned for SSE `data:` lines when the answer is an event stream. */
static void body_bytes(loadgen_t *lg, conn_t *c, const char *p, size_t n, int64_t recv_real) {
    if (!c->sse) return;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = SSE_LINE_MAX - c->sse_len; /* a longer line keeps its start: the stamp is early */
        memcpy(c->sse_line + c->sse_len, p, take < room ? take : room);
        c->sse_len += take < room ? take : room;
        if (!nl) return;
        if (c->sse_len > 0 && c->sse_line[c->sse_len - 1] == '\r') c->sse_len--;
        sse_line_done(lg, c, recv_real);
        p = nl + 1;
        n -= take + 1;
    }
}

static int header_is(const char *line, size_t len, const char *name, const char **value) {
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') return 0;
    const char *v = line + nl + 1;
    while (v < line + len && (*v == ' ' || *v == '\t')) v++;
    *value = v;
    return 1;
}

/* Parse the status line and headers in c->head (ends with CRLFCRLF); 0 on success. */
static int parse_head(conn_t *c) {
    char *p = c->head, *end = c->head + c->head_len;
    if (c->head_len < 12 || memcmp(p, "HTTP/1.", 7) != 0) return -1;
    c->status = atoi(p + 9);
    if (c->status < 100 || c->status > 599) return -1;
    int http10 = p[7] == '0';
    int chunked = 0, keep_alive = 0;
    int64_t length = -1;
    char *line = memchr(p, '\n', (size_t)(end - p));
    while (line && line + 1 < end) {
        line++;
        char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        size_t len = (size_t)(eol - line);
        if (len > 0 && line[len - 1] == '\r') len--;
        if (len == 0) break;
        const char *v;
        if (header_is(line, len, "content-length", &v)) {
            length = strtoll(v, NULL, 10);
        } else if (header_is(line, len, "transfer-encoding", &v)) {
            if (memmem(v, len - (size_t)(v - line), "chunked", 7)) chunked = 1;
        } else if (header_is(line, len, "connection", &v)) {
            if (strncasecmp(v, "close", 5) == 0) c->close_after = 1;
            if (strncasecmp(v, "keep-alive", 10) == 0) keep_alive = 1;
        } else if (header_is(line, len, "content-type", &v)) {
            if (memmem(v, len - (size_t)(v - line), "event-stream", 12)) c->sse = 1;
        }
        line = eol;
    }
    if (http10 && !keep_alive) c->close_after = 1;
    if (c->status == 204 || c->status == 304) {
        c->phase = P_BODY_LENGTH;
        c->remaining = 0;
    } else if (chunked) {
        c->phase = P_CHUNK_SIZE;
    } else if (length >= 0) {
        c->phase = P_BODY_LENGTH;
        c->remaining = length;
    } else {
        c->phase = P_BODY_UNTIL_CLOSE;
        c->close_after = 1;
    }
    return 0;
}

static void response_done(loadgen_t *lg, int i, int64_t now) {
    conn_t *c = &lg->conns[i];
    lg->res.completed++;
    lg->res.status[c->status]++;
    if (c->status >= 200 && c->status < 300) {
        lg->res.ok++;
        vec_push(&lg->res.latency, now - c->intended);
    }
    lg->in_flight--;
    if (c->close_after) {
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_at = now;
    } else {
        idle_push(lg, i);
    }
}

/* Feed received bytes to the parser. Returns 1 when the answer is complete, -1 on a parse error. */
static int feed(loadgen_t *lg, conn_t *c, const char *p, size_t n, int64_t recv_real) {
    while (n > 0) {
        switch (c->phase) {
        case P_HEADERS: {
            size_t room = HEADER_BUF - c->head_len;
            size_t take = n < room ? n : room;
            size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
            memcpy(c->head + c->head_len, p, take);
            c->head_len += take;
            char *term = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
            if (!term) {
                if (c->head_len == HEADER_BUF) return -1;
                return 0;
            }
            size_t head_end = (size_t)(term - c->head) + 4;
            size_t body_in_buf = c->head_len - head_end;
            c->head_len = head_end;
            if (parse_head(c) < 0) return -1;
            /* bytes after the head in this read belong to the body */
            size_t consumed = take - body_in_buf;
            p += consumed;
            n -= consumed;
            if (c->phase == P_BODY_LENGTH && c->remaining == 0) return 1;
            break;
        }
        case P_BODY_LENGTH: {
            size_t take = (int64_t)n < c->remaining ? n : (size_t)c->remaining;
            body_bytes(lg, c, p, take, recv_real);
            c->remaining -= (int64_t)take;
            p += take;
            n -= take;
            if (c->remaining == 0) return 1;
            break;
        }
        case P_BODY_UNTIL_CLOSE:
            body_bytes(lg, c, p, n, recv_real);
            return 0;
        case P_CHUNK_SIZE:
        case P_TRAILERS:
        case P_CHUNK_END: {
            const char *nl = memchr(p, '\n', n);
            size_t take = nl ? (size_t)(nl - p) + 1 : n;
            if (c->line_len + take > sizeof c->line) return -1;
            memcpy(c->line + c->line_len, p, take);
            c->line_len += take;
            p += take;
            n -= take;
            if (!nl) break;
            size_t len = c->line_len;
            while (len > 0 && (c->line[len - 1] == '\n' || c->line[len - 1] == '\r')) len--;
            c->line_len = 0;
            if (c->phase == P_CHUNK_END) {
                if (len != 0) return -1;
                c->phase = P_CHUNK_SIZE;
            } else if (c->phase == P_TRAILERS) {
                if (len == 0) return 1;
            } else {
                c->line[len] = '\0';
                char *endp;
                long long size = strtoll(c->line, &endp, 16);
                if (endp == c->line || size < 0) return -1;
                if (size == 0) {
                    c->phase = P_TRAILERS;
                } else {
                    c->phase = P_CHUNK_DATA;
                    c->remaining = size;
                }
            }
            break;
        }
        case P_CHUNK_DATA: {
            size_t take = (int64_t)n < c->remaining ? n : (size_t)c->remaining;
            body_bytes(lg, c, p, take, recv_real);
            c->remaining -= (int64_t)take;
            p += take;
            n -= take;
            if (c->remaining == 0) c->phase = P_CHUNK_END;
            break;
        }
        }
    }
    return 0;
}

static void conn_readable(loadgen_t *lg, int i) {
    static char buf[READ_BUF];
    conn_t *c = &lg->conns[i];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        int64_t now = mono_ns();
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (c->state == C_IDLE) {
            /* the server closed a keep-alive connection between requests: not an error */
            conn_close(lg, i, now);
            return;
        }
        if (n == 0 && c->phase == P_BODY_UNTIL_CLOSE) {
            response_done(lg, i, now); /* the answer ends with the connection */
            return;
        }
        if (n <= 0) {
            fail_request(lg, i, &lg->res.err_io, now);
            return;
        }
        int done = feed(lg, c, buf, (size_t)n, real_ns());
        if (done < 0) {
            fail_request(lg, i, &lg->res.err_parse, now);
            return;
        }
        if (done == 1) {
            response_done(lg, i, now);
            return;
        }
    }
}

static void conn_event(loadgen_t *lg, int i, uint32_t events) {
    conn_t *c = &lg->conns[i];
    int64_t now = mono_ns();
    if (c->fd < 0) return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            lg->res.err_connect++;
            conn_close(lg, i, now + RECONNECT_BACKOFF_NS);
            return;
        }
        epoll_set(lg, i, EPOLLIN, EPOLL_CTL_MOD);
        idle_push(lg, i);
        return;
    }
    if (c->state == C_WRITING && (events & EPOLLOUT)) {
        conn_write(lg, i, now);
        if (c->state == C_DOWN) return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_readable(lg, i);
}

/* ---------------------------------------------------------------- the loop */

static int requests_due(loadgen_t *lg, int64_t now) {
    if (lg->cfg.open_loop)
        return lg->next_request < lg->res.scheduled && lg->schedule[lg->next_request] <= now;
    return now < lg->end_of_sending;
}

static void dispatch(loadgen_t *lg, int64_t now) {
    while (lg->nidle > 0 && requests_due(lg, now)) {
        int i = lg->idle[--lg->nidle];
        int64_t intended = now;
        if (lg->cfg.open_loop) intended = lg->schedule[lg->next_request++];
        send_request(lg, i, intended, now);
    }
    if (lg->cfg.open_loop) {
        /* due but unsent: the schedule is sorted, so binary search for the first time after now */
        int64_t lo = lg->next_request, hi = lg->res.scheduled;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (lg->schedule[mid] <= now) lo = mid + 1;
            else hi = mid;
        }
        if (lo - lg->next_request > lg->res.max_pending) lg->res.max_pending = lo - lg->next_request;
    }
}

static void housekeeping(loadgen_t *lg, int64_t now) {
    lg->last_housekeeping = now;
    for (int i = 0; i < lg->cfg.connections; i++) {
        conn_t *c = &lg->conns[i];
        if ((c->state == C_WRITING || c->state == C_READING) && now > c->deadline)
            fail_request(lg, i, &lg->res.err_timeout, now);
        else if (c->state == C_DOWN && now >= c->retry_at && now < lg->hard_stop)
            conn_open(lg, i, now);
    }
}

static void arm_timer(loadgen_t *lg, int64_t now) {
    int64_t wake = lg->last_housekeeping + HOUSEKEEPING_NS;
    if (lg->cfg.open_loop && lg->nidle > 0 && lg->next_request < lg->res.scheduled) {
        int64_t next = lg->schedule[lg->next_request];
        if (next < wake) wake = next;
    }
    if (!lg->cfg.open_loop && now < lg->end_of_sending && lg->end_of_sending < wake) wake = lg->end_of_sending;
    if (wake <= now) wake = now + 1000; /* 1 µs: never a zero (disarming) timer */
    struct itimerspec its = {0};
    its.it_value.tv_sec = wake / 1000000000LL;
    its.it_value.tv_nsec = wake % 1000000000LL;
    timerfd_settime(lg->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int finished(loadgen_t *lg, int64_t now) {
    if (now >= lg->hard_stop) return 1;
    if (lg->in_flight > 0) return 0;
    if (lg->cfg.open_loop) return lg->next_request >= lg->res.scheduled;
    return now >= lg->end_of_sending;
}

static void build_schedule(loadgen_t *lg) {
    config_t *cfg = &lg->cfg;
    int64_t n = (int64_t)(cfg->rate * cfg->duration_s);
    if (n < 1) n = 1;
    lg->schedule = calloc((size_t)n, sizeof(int64_t));
    if (!lg->schedule) die("out of memory");
    double gap = 1e9 / cfg->rate, t = 0.0;
    unsigned state = cfg->seed ? cfg->seed : 1;
    for (int64_t k = 0; k < n; k++) {
        lg->schedule[k] = lg->start + (int64_t)t;
        if (cfg->poisson) {
            double u = (double)(rand_r(&state) % 1000000 + 1) / 1000001.0;
            t += -log(u) * gap;
        } else {
            t += gap;
        }
    }
    lg->res.scheduled = n;
}

static void run(loadgen_t *lg) {
    config_t *cfg = &lg->cfg;
    struct epoll_event evs[256];
    int64_t now = mono_ns();
    /* Open every connection first: the clock starts once they are up (or the wait ran out). */
    for (int i = 0; i < cfg->connections; i++) conn_open(lg, i, now);
    lg->hard_stop = now + (int64_t)(cfg->connect_wait_s * 1e9);
    lg->last_housekeeping = now;
    while (lg->nidle < cfg->connections && (now = mono_ns()) < lg->hard_stop) {
        int n = epoll_wait(lg->epfd, evs, 256, 10);
        for (int k = 0; k < n; k++)
            if (evs[k].data.u32 != TIMER_ID) conn_event(lg, (int)evs[k].data.u32, evs[k].events);
        now = mono_ns();
        if (now - lg->last_housekeeping >= HOUSEKEEPING_NS) housekeeping(lg, now);
    }
    lg->start = mono_ns();
    lg->end_of_sending = lg->start + (int64_t)(cfg->duration_s * 1e9);
    lg->hard_stop = lg->end_of_sending + (int64_t)(cfg->drain_s * 1e9);
    if (cfg->open_loop) build_schedule(lg);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TIMER_ID};
    epoll_ctl(lg->epfd, EPOLL_CTL_ADD, lg->timerfd, &tev);
    now = lg->start;
    while (!finished(lg, now)) {
        dispatch(lg, now);
        arm_timer(lg, now);
        int n = epoll_wait(lg->epfd, evs, 256, -1);
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u32 == TIMER_ID) {
                uint64_t expirations;
                if (read(lg->timerfd, &expirations, sizeof expirations) < 0) { /* spurious: fine */ }
                continue;
            }
            conn_event(lg, (int)evs[k].data.u32, evs[k].events);
        }
        now = mono_ns();
        if (now - lg->last_housekeeping >= HOUSEKEEPING_NS) housekeeping(lg, now);
    }
    /* Whatever is still in flight at the hard stop timed out; what was never sent is unsent. */
    for (int i = 0; i < cfg->connections; i++) {
        conn_t *c = &lg->conns[i];
        if (c->state == C_WRITING || c->state == C_READING) fail_request(lg, i, &lg->res.err_timeout, now);
    }
    if (cfg->open_loop) lg->res.unsent = lg->res.scheduled - lg->next_request;
}

/* ---------------------------------------------------------------- output */

static void print_percentiles(const char *name, vec_t *v) {
    qsort(v->v, v->n, sizeof(int64_t), cmp_i64);
    double sum = 0;
    for (size_t k = 0; k < v->n; k++) sum += (double)v->v[k];
    printf("\"%s\":{\"n\":%zu,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.4f,\"mean\":%.4f}", name, v->n,
           pct_ms(v, 50), pct_ms(v, 90), pct_ms(v, 99), v->n ? (double)v->v[v->n - 1] / 1e6 : 0.0,
           v->n ? sum / (double)v->n / 1e6 : 0.0);
}

/* One JSON object: the run's shape; scheduled/sent/completed/ok/unsent counts (sent = completed +
 * io + timeout + parse errors; completed = answers with any status, ok = 2xx); errors by kind;
 * the status histogram; cpu_s (this program's own CPU time); max_pending (open loop: most requests
 * due at once with no free connection); rps and events_per_s over elapsed_s; latency_ms of the 2xx
 * answers (from the intended send time) and chunk_delay_ms (receive time minus the event's stamp),
 * each as n, p50, p90, p99, max, mean. */
static void print_results(loadgen_t *lg, int64_t stop) {
    results_t *r = &lg->res;
    config_t *cfg = &lg->cfg;
    double elapsed = (double)(stop - lg->start) / 1e9;
    if (elapsed <= 0) elapsed = 1e-9;
    printf("{\"mode\":\"%s\",\"rate\":%.3f,\"duration_s\":%.3f,\"connections\":%d,\"targets\":%d,",
           cfg->open_loop ? "open" : "closed", cfg->open_loop ? cfg->rate : 0.0, cfg->duration_s,
           cfg->connections, cfg->ntargets);
    printf("\"elapsed_s\":%.6f,\"scheduled\":%lld,\"sent\":%lld,\"completed\":%lld,\"ok\":%lld,\"unsent\":%lld,",
           elapsed, (long long)r->scheduled, (long long)r->sent, (long long)r->completed, (long long)r->ok,
           (long long)r->unsent);
    printf("\"errors\":{\"connect\":%lld,\"io\":%lld,\"timeout\":%lld,\"parse\":%lld},", (long long)r->err_connect,
           (long long)r->err_io, (long long)r->err_timeout, (long long)r->err_parse);
    printf("\"status\":{");
    int first = 1;
    for (int s = 0; s < 600; s++) {
        if (!r->status[s]) continue;
        printf("%s\"%d\":%lld", first ? "" : ",", s, (long long)r->status[s]);
        first = 0;
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu_s = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                   (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    printf("},\"cpu_s\":%.6f,\"max_pending\":%lld,\"rps\":%.3f,\"events\":%lld,\"events_per_s\":%.3f,\"chunks\":%lld,",
           cpu_s, (long long)r->max_pending, (double)r->ok / elapsed, (long long)r->events, (double)r->events / elapsed,
           (long long)r->chunks);
    print_percentiles("latency_ms", &r->latency);
    printf(",");
    print_percentiles("chunk_delay_ms", &r->chunk_delay);
    printf("}\n");
}

/* ---------------------------------------------------------------- arguments */

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open --body-file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *out = malloc((size_t)size + 1);
    if (!out || fread(out, 1, (size_t)size, f) != (size_t)size) die("cannot read --body-file");
    out[size] = '\0';
    fclose(f);
    return out;
}

static void add_target(config_t *cfg, const char *spec) {
    if (cfg->ntargets == MAX_TARGETS) die("too many --target");
    target_t *t = &cfg->targets[cfg->ntargets++];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec) die("--target wants HOST:PORT");
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof t->host) die("--target host too long");
    memcpy(t->host, spec, hl);
    t->host[hl] = '\0';
    t->port = atoi(colon + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(t->host, colon + 1, &hints, &ai) != 0) die("cannot resolve --target");
    memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
    t->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
}

static void build_requests(config_t *cfg) {
    size_t body_len = cfg->body ? strlen(cfg->body) : 0;
    for (int k = 0; k < cfg->ntargets; k++) {
        target_t *t = &cfg->targets[k];
        size_t cap = 1024 + body_len + strlen(cfg->path);
        for (int h = 0; h < cfg->nheaders; h++) cap += strlen(cfg->headers[h]) + 2;
        t->request = malloc(cap);
        if (!t->request) die("out of memory");
        int n = snprintf(t->request, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", cfg->method, cfg->path, t->host,
                         t->port);
        if (cfg->body)
            n += snprintf(t->request + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                          body_len);
        for (int h = 0; h < cfg->nheaders; h++)
            n += snprintf(t->request + n, cap - (size_t)n, "%s\r\n", cfg->headers[h]);
        n += snprintf(t->request + n, cap - (size_t)n, "\r\n");
        if (cfg->body) {
            memcpy(t->request + n, cfg->body, body_len);
            n += (int)body_len;
        }
        t->request_len = (size_t)n;
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --target HOST:PORT [--target ...] [--path /v1/completions] [--method POST]\n"
            "               [--body JSON | --body-file FILE] [--header 'K: V' ...]\n"
            "               --mode open --rate R | --mode closed\n"
            "               [--duration S] [--connections N] [--timeout S] [--drain S] [--connect-wait S]\n"
            "               [--arrival uniform|poisson] [--seed N] [--stamp-key ts]\n");
    exit(2);
}

static void parse_args(config_t *cfg, int argc, char **argv) {
    static struct option opts[] = {
        {"target", required_argument, 0, 't'},   {"path", required_argument, 0, 'p'},
        {"method", required_argument, 0, 'M'},   {"body", required_argument, 0, 'b'},
        {"body-file", required_argument, 0, 'B'}, {"header", required_argument, 0, 'H'},
        {"mode", required_argument, 0, 'm'},     {"rate", required_argument, 0, 'r'},
        {"duration", required_argument, 0, 'd'}, {"connections", required_argument, 0, 'c'},
        {"timeout", required_argument, 0, 'T'},  {"drain", required_argument, 0, 'D'},
        {"connect-wait", required_argument, 0, 'W'}, {"arrival", required_argument, 0, 'a'},
        {"seed", required_argument, 0, 's'},     {"stamp-key", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    cfg->path = "/v1/completions";
    cfg->method = NULL;
    cfg->duration_s = 5.0;
    cfg->connections = -1;
    cfg->timeout_s = 30.0;
    cfg->drain_s = 5.0;
    cfg->connect_wait_s = 5.0;
    snprintf(cfg->stamp_key, sizeof cfg->stamp_key, "\"ts\":");
    int mode_given = 0, opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 't': add_target(cfg, optarg); break;
        case 'p': cfg->path = optarg; break;
        case 'M': cfg->method = optarg; break;
        case 'b': cfg->body = optarg; break;
        case 'B': cfg->body = read_file(optarg); break;
        case 'H':
            if (cfg->nheaders == MAX_HEADERS) die("too many --header");
            cfg->headers[cfg->nheaders++] = optarg;
            break;
        case 'm':
            mode_given = 1;
            if (strcmp(optarg, "open") == 0) cfg->open_loop = 1;
            else if (strcmp(optarg, "closed") == 0) cfg->open_loop = 0;
            else die("--mode is open or closed");
            break;
        case 'r': cfg->rate = atof(optarg); break;
        case 'd': cfg->duration_s = atof(optarg); break;
        case 'c': cfg->connections = atoi(optarg); break;
        case 'T': cfg->timeout_s = atof(optarg); break;
        case 'D': cfg->drain_s = atof(optarg); break;
        case 'W': cfg->connect_wait_s = atof(optarg); break;
        case 'a':
            if (strcmp(optarg, "poisson") == 0) cfg->poisson = 1;
            else if (strcmp(optarg, "uniform") != 0) die("--arrival is uniform or poisson");
            break;
        case 's': cfg->seed = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'k': snprintf(cfg->stamp_key, sizeof cfg->stamp_key, "\"%s\":", optarg); break;
        default: usage();
        }
    }
    if (!mode_given || cfg->ntargets == 0) usage();
    if (cfg->open_loop && cfg->rate <= 0) die("--mode open needs --rate > 0");
    if (cfg->duration_s <= 0) die("--duration must be > 0");
    if (cfg->connections < 0) cfg->connections = cfg->open_loop ? 64 : 32;
    if (cfg->connections < 1) die("--connections must be >= 1");
    if (!cfg->method) cfg->method = cfg->body ? "POST" : "GET";
}

int main(int argc, char **argv) {
    loadgen_t lg;
    memset(&lg, 0, sizeof lg);
    parse_args(&lg.cfg, argc, argv);
    build_requests(&lg.cfg);
    lg.conns = calloc((size_t)lg.cfg.connections, sizeof(conn_t));
    lg.idle = calloc((size_t)lg.cfg.connections, sizeof(int));
    if (!lg.conns || !lg.idle) die("out of memory");
    for (int i = 0; i < lg.cfg.connections; i++) {
        lg.conns[i].fd = -1;
        lg.conns[i].target = i % lg.cfg.ntargets;
        lg.conns[i].state = C_DOWN;
    }
    lg.epfd = epoll_create1(EPOLL_CLOEXEC);
    lg.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (lg.epfd < 0 || lg.timerfd < 0) die("epoll/timerfd failed");
    run(&lg);
    print_results(&lg, mono_ns());
    return 0;
}
