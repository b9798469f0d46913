/*
 * loadgen_http.h - sockets, request sending and HTTP/1.1 response parsing for loadgen.c.
 * Included once, by loadgen.c (a single translation unit).
 */
#ifndef LOADGEN_HTTP_H
#define LOADGEN_HTTP_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BODY_BUF (1 << 20)
#define RBUF (64 * 1024)

static struct sockaddr_in g_addr;
static int g_port;
static char *g_body; /* BODY_BUF bytes of pattern */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------- connection + response parsing ---------- */

typedef struct {
    int fd;
    size_t start, end;
    char buf[RBUF];
} conn_t;

typedef struct {
    int status;
    long long content_length; /* -1 when absent */
    int chunked;
    int close;
    long long upload_offset; /* -1 when absent */
    int business_done;       /* Ferry-Business-Status: done */
    char location[512];
    char body_snippet[256];
} resp_t;

static int conn_open(conn_t *c, int timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (timeout_s > 0) {
        struct timeval tv = {timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) == 0) break;
        if (errno == EINTR) continue;
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->start = c->end = 0;
    return 0;
}

static void conn_close(conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* headers (MSG_MORE so they coalesce with the body) then `n` body bytes from g_body */
static int send_request(int fd, const char *hdr, size_t hlen, long long n) {
    while (hlen > 0) {
        ssize_t k = send(fd, hdr, hlen, MSG_NOSIGNAL | (n > 0 ? MSG_MORE : 0));
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        hdr += k;
        hlen -= (size_t)k;
    }
    while (n > 0) {
        size_t k = n > BODY_BUF ? BODY_BUF : (size_t)n;
        if (send_all(fd, g_body, k) < 0) return -1;
        n -= (long long)k;
    }
    return 0;
}

/* make at least one more byte available; 0 on EOF, -1 on error */
static int conn_fill(conn_t *c) {
    if (c->start == c->end) c->start = c->end = 0;
    if (c->end == sizeof c->buf) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
        if (c->end == sizeof c->buf) return -1; /* line too long */
    }
    for (;;) {
        ssize_t k = recv(c->fd, c->buf + c->end, sizeof c->buf - c->end, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) return 0;
        c->end += (size_t)k;
        return 1;
    }
}

/* read one CRLF-terminated line (without CRLF) into out; -1 on error/EOF */
static int conn_line(conn_t *c, char *out, size_t cap) {
    for (;;) {
        char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
        if (nl) {
            size_t len = (size_t)(nl - (c->buf + c->start));
            size_t copy = len;
            if (copy > 0 && c->buf[c->start + copy - 1] == '\r') copy--;
            if (copy >= cap) copy = cap - 1;
            memcpy(out, c->buf + c->start, copy);
            out[copy] = 0;
            c->start += len + 1;
            return 0;
        }
        if (conn_fill(c) <= 0) return -1;
    }
}

/* consume n bytes (n < 0: until EOF); keeps the first bytes as a snippet */
static int conn_skip(conn_t *c, long long n, char *snip, size_t snipcap, size_t *sniplen) {
    while (n != 0) {
        if (c->start == c->end) {
            int r = conn_fill(c);
            if (r == 0 && n < 0) return 0;
            if (r <= 0) return -1;
        }
        size_t avail = c->end - c->start;
        size_t take = (n < 0 || (long long)avail < n) ? avail : (size_t)n;
        if (snip && *sniplen + 1 < snipcap) {
            size_t s = take;
            if (s > snipcap - 1 - *sniplen) s = snipcap - 1 - *sniplen;
            memcpy(snip + *sniplen, c->buf + c->start, s);
            *sniplen += s;
            snip[*sniplen] = 0;
        }
        c->start += take;
        if (n > 0) n -= (long long)take;
    }
    return 0;
}

static int read_response(conn_t *c, resp_t *r) {
    char line[1024];
again:
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    r->upload_offset = -1;
    if (conn_line(c, line, sizeof line) < 0) return -1;
    if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12) return -1;
    r->status = atoi(line + 9);
    if (line[7] == '0') r->close = 1; /* HTTP/1.0 */
    for (;;) {
        if (conn_line(c, line, sizeof line) < 0) return -1;
        if (line[0] == 0) break;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        if (!strcasecmp(line, "content-length")) r->content_length = atoll(v);
        else if (!strcasecmp(line, "upload-offset")) r->upload_offset = atoll(v);
        else if (!strcasecmp(line, "transfer-encoding")) r->chunked = strcasestr(v, "chunked") != NULL;
        else if (!strcasecmp(line, "connection")) r->close = strcasestr(v, "close") != NULL;
        else if (!strcasecmp(line, "location")) snprintf(r->location, sizeof r->location, "%s", v);
        else if (!strcasecmp(line, "ferry-business-status")) r->business_done = !strncasecmp(v, "done", 4);
    }
    if (r->status >= 100 && r->status < 200) goto again; /* 100 Continue etc. */
    size_t sl = 0;
    char *snip = r->status >= 300 ? r->body_snippet : NULL;
    if (r->status == 204 || r->status == 304) return 0;
    if (r->chunked) {
        for (;;) {
            if (conn_line(c, line, sizeof line) < 0) return -1;
            long long n = strtoll(line, NULL, 16);
            if (n == 0) {
                do {
                    if (conn_line(c, line, sizeof line) < 0) return -1;
                } while (line[0] != 0);
                return 0;
            }
            if (conn_skip(c, n, snip, sizeof r->body_snippet, &sl) < 0) return -1;
            if (conn_line(c, line, sizeof line) < 0) return -1;
        }
    }
    if (r->content_length >= 0) return conn_skip(c, r->content_length, snip, sizeof r->body_snippet, &sl);
    if (r->close) return conn_skip(c, -1, snip, sizeof r->body_snippet, &sl);
    return 0;
}

/* "http://host:port/files/abc" -> "/files/abc" */
static const char *url_path(const char *loc) {
    const char *p = strstr(loc, "://");
    if (!p) return loc;
    p = strchr(p + 3, '/');
    return p ? p : "/";
}

static void report_bad(const char *what, const resp_t *r) {
    fprintf(stderr, "loadgen: %s: HTTP %d upload-offset=%lld body=%.200s\n", what, r->status,
            r->upload_offset, r->body_snippet);
}

#endif
