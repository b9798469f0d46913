/*
 * loadgen.c - minimal HTTP/1.1 load generator for the Ferry benchmark.
 *
 * Plain sockets + pthreads, no dependencies. Compiled at run time by run.sh:
 *     gcc -O2 -pthread -o loadgen loadgen.c   (includes loadgen_http.h)
 *
 * Modes (all print one "key=value ..." summary line on stdout; diagnostics on stderr):
 *
 *   loadgen stream PORT MODE SIZE CHUNK TIMEOUT_S
 *       MODE = discard : one PUT /discard carrying SIZE bytes
 *       MODE = tus     : POST /files/ (Upload-Length SIZE) then PATCHes of CHUNK bytes
 *                        on the same keep-alive connection (CHUNK >= SIZE -> one PATCH)
 *       Timed from the first byte of the first request to the end of the last response.
 *
 *   loadgen burst PORT MODE COUNT SIZE CONC TIMEOUT_S [PATH [HEADER ...]]
 *       MODE = create  : COUNT x POST /files/ creation-with-upload of SIZE bytes
 *       MODE = discard : COUNT x PUT /discard of SIZE bytes
 *       CONC threads, one persistent keep-alive connection each; timed after all
 *       connections are established. Prints rate and latency percentiles.
 *       Optional (create only): the creation PATH (default /files/) and extra request
 *       headers, each one argument 'Name: value' (e.g. 'Authorization: Bearer ...');
 *       the summary then also counts responses with Ferry-Business-Status: done.
 *
 *   loadgen create PORT COUNT LENGTH
 *       COUNT x POST /files/ (Upload-Length LENGTH, no body) on one connection; prints
 *       the upload path (from Location) one per line, then the summary on stderr.
 *
 *   loadgen slow PORT PATHS_FILE LENGTH INTERVAL_MS
 *       For every path: connect, send PATCH headers (Upload-Offset 0, Content-Length
 *       LENGTH) and then 1 body byte per socket every INTERVAL_MS. Prints "READY ..."
 *       once all sockets are open; stops when a line arrives on stdin (or stdin EOF)
 *       and prints a summary (how many sockets the server closed or answered early).
 *
 * The request body is a 1 MiB preallocated pattern buffer sent repeatedly, so a
 * 1 GiB body never sits in memory.
 */
#include "loadgen_http.h"

/* ---------- stream ---------- */

static int mode_stream(int argc, char **argv) {
    if (argc < 4) return 2;
    const char *mode = argv[0];
    long long size = atoll(argv[1]);
    long long chunk = atoll(argv[2]);
    int timeout = atoi(argv[3]);
    if (chunk <= 0 || chunk > size) chunk = size;
    conn_t *c = calloc(1, sizeof *c);
    resp_t r;
    char hdr[1024];
    int requests = 0;
    if (conn_open(c, timeout) < 0) {
        perror("loadgen: connect");
        return 1;
    }
    double t0 = now_s();
    if (!strcmp(mode, "discard")) {
        int h = snprintf(hdr, sizeof hdr,
                         "PUT /discard HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\n\r\n",
                         g_port, size);
        int se = send_request(c->fd, hdr, (size_t)h, size);
        if (read_response(c, &r) < 0 || r.status != 204) {
            if (se < 0) perror("loadgen: send");
            report_bad("PUT /discard", &r);
            printf("ok=0\n");
            return 1;
        }
        requests = 1;
    } else {
        int h = snprintf(hdr, sizeof hdr,
                         "POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTus-Resumable: 1.0.0\r\n"
                         "Upload-Length: %lld\r\nContent-Length: 0\r\n\r\n",
                         g_port, size);
        if (send_request(c->fd, hdr, (size_t)h, 0) < 0 || read_response(c, &r) < 0 || r.status != 201 ||
            !r.location[0]) {
            report_bad("POST /files/", &r);
            printf("ok=0\n");
            return 1;
        }
        requests++;
        char path[512];
        snprintf(path, sizeof path, "%s", url_path(r.location));
        long long off = 0;
        while (off < size) {
            if (r.close) {
                conn_close(c);
                if (conn_open(c, timeout) < 0) {
                    perror("loadgen: reconnect");
                    printf("ok=0\n");
                    return 1;
                }
            }
            long long n = size - off < chunk ? size - off : chunk;
            h = snprintf(hdr, sizeof hdr,
                         "PATCH %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTus-Resumable: 1.0.0\r\n"
                         "Content-Type: application/offset+octet-stream\r\nUpload-Offset: %lld\r\n"
                         "Content-Length: %lld\r\n\r\n",
                         path, g_port, off, n);
            int se = send_request(c->fd, hdr, (size_t)h, n);
            int re = read_response(c, &r);
            if (re < 0 || r.status != 204 || r.upload_offset != off + n) {
                if (se < 0) perror("loadgen: send");
                if (re < 0) fprintf(stderr, "loadgen: no/invalid response to PATCH at offset %lld\n", off);
                report_bad("PATCH", &r);
                printf("ok=0 failed_at_offset=%lld\n", off);
                return 1;
            }
            requests++;
            off += n;
        }
    }
    double dt = now_s() - t0;
    printf("ok=1 seconds=%.6f bytes=%lld requests=%d mibps=%.3f\n", dt, size, requests,
           size / 1048576.0 / dt);
    return 0;
}

/* ---------- burst ---------- */

typedef struct {
    int create;
    long long count, size;
    int timeout;
    int hlen;
    char hdr[8192];
    long long business_done; /* atomic: responses with Ferry-Business-Status: done */
    pthread_barrier_t barrier;
    long long next;      /* atomic */
    double *lat;         /* per request, -1 on failure */
    long long errors;    /* atomic */
    long long reconnects; /* atomic */
    pthread_mutex_t err_mu;
    int err_printed;
} burst_t;

static void *burst_worker(void *arg) {
    burst_t *b = arg;
    conn_t *c = calloc(1, sizeof *c);
    resp_t r;
    c->fd = -1;
    if (conn_open(c, b->timeout) < 0) perror("loadgen: connect");
    pthread_barrier_wait(&b->barrier);
    for (;;) {
        long long i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->count) break;
        if (c->fd < 0) {
            if (conn_open(c, b->timeout) < 0) {
                b->lat[i] = -1;
                __atomic_fetch_add(&b->errors, 1, __ATOMIC_RELAXED);
                continue;
            }
            __atomic_fetch_add(&b->reconnects, 1, __ATOMIC_RELAXED);
        }
        double t0 = now_s();
        int se = send_request(c->fd, b->hdr, (size_t)b->hlen, b->size);
        int re = read_response(c, &r);
        double t1 = now_s();
        int good = re == 0 && (b->create ? (r.status == 201 && r.upload_offset == b->size) : r.status == 204);
        b->lat[i] = good ? t1 - t0 : -1;
        if (good && r.business_done) __atomic_fetch_add(&b->business_done, 1, __ATOMIC_RELAXED);
        if (!good) {
            __atomic_fetch_add(&b->errors, 1, __ATOMIC_RELAXED);
            pthread_mutex_lock(&b->err_mu);
            if (b->err_printed++ < 5) {
                if (se < 0 || re < 0) fprintf(stderr, "loadgen: request %lld: send=%d read=%d errno=%s\n", i, se, re, strerror(errno));
                report_bad(b->create ? "POST creation-with-upload" : "PUT /discard", &r);
            }
            pthread_mutex_unlock(&b->err_mu);
        }
        if (!good || r.close) conn_close(c);
    }
    conn_close(c);
    free(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, long long n, double p) {
    if (n <= 0) return 0;
    long long k = (long long)(p * (double)(n - 1) + 0.5);
    if (k >= n) k = n - 1;
    return sorted[k];
}

static int mode_burst(int argc, char **argv) {
    if (argc < 5) return 2;
    burst_t *b = calloc(1, sizeof *b);
    b->create = !strcmp(argv[0], "create");
    b->count = atoll(argv[1]);
    b->size = atoll(argv[2]);
    int conc = atoi(argv[3]);
    b->timeout = atoi(argv[4]);
    const char *path = argc > 5 ? argv[5] : "/files/";
    if (b->create) {
        b->hlen = snprintf(b->hdr, sizeof b->hdr,
                           "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTus-Resumable: 1.0.0\r\n"
                           "Upload-Length: %lld\r\nContent-Type: application/offset+octet-stream\r\n",
                           path, g_port, b->size);
        for (int i = 6; i < argc; i++)
            b->hlen += snprintf(b->hdr + b->hlen, sizeof b->hdr - (size_t)b->hlen, "%s\r\n", argv[i]);
        b->hlen += snprintf(b->hdr + b->hlen, sizeof b->hdr - (size_t)b->hlen, "Content-Length: %lld\r\n\r\n", b->size);
        if ((size_t)b->hlen >= sizeof b->hdr) {
            fprintf(stderr, "loadgen: request headers longer than %zu bytes\n", sizeof b->hdr);
            return 2;
        }
    } else
        b->hlen = snprintf(b->hdr, sizeof b->hdr,
                           "PUT /discard HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\n\r\n",
                           g_port, b->size);
    b->lat = calloc((size_t)b->count, sizeof(double));
    pthread_mutex_init(&b->err_mu, NULL);
    pthread_barrier_init(&b->barrier, NULL, (unsigned)conc + 1);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < conc; i++) pthread_create(&th[i], &attr, burst_worker, b);
    pthread_barrier_wait(&b->barrier);
    double t0 = now_s();
    for (int i = 0; i < conc; i++) pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    long long n = 0;
    for (long long i = 0; i < b->count; i++)
        if (b->lat[i] >= 0) b->lat[n++] = b->lat[i];
    qsort(b->lat, (size_t)n, sizeof(double), cmp_double);
    printf("ok=%lld errors=%lld reconnects=%lld seconds=%.6f rate=%.2f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f mibps=%.2f",
           n, b->errors, b->reconnects, dt, n / dt, pct(b->lat, n, 0.50) * 1e3, pct(b->lat, n, 0.90) * 1e3,
           pct(b->lat, n, 0.99) * 1e3, n ? b->lat[n - 1] * 1e3 : 0.0, n * (double)b->size / 1048576.0 / dt);
    if (argc > 5) printf(" business_done=%lld", b->business_done);
    printf("\n");
    return b->errors ? 1 : 0;
}

/* ---------- create ---------- */

static int mode_create(int argc, char **argv) {
    if (argc < 2) return 2;
    long long count = atoll(argv[0]);
    long long length = atoll(argv[1]);
    conn_t *c = calloc(1, sizeof *c);
    resp_t r;
    char hdr[512];
    int h = snprintf(hdr, sizeof hdr,
                     "POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTus-Resumable: 1.0.0\r\n"
                     "Upload-Length: %lld\r\nContent-Length: 0\r\n\r\n",
                     g_port, length);
    c->fd = -1;
    double t0 = now_s();
    for (long long i = 0; i < count; i++) {
        if (c->fd < 0 && conn_open(c, 60) < 0) {
            perror("loadgen: connect");
            return 1;
        }
        if (send_request(c->fd, hdr, (size_t)h, 0) < 0 || read_response(c, &r) < 0 || r.status != 201 ||
            !r.location[0]) {
            report_bad("POST /files/", &r);
            return 1;
        }
        printf("%s\n", url_path(r.location));
        if (r.close) conn_close(c);
    }
    double dt = now_s() - t0;
    fprintf(stderr, "created=%lld seconds=%.3f rate=%.1f\n", count, dt, count / dt);
    return 0;
}

/* ---------- slow ---------- */

static int mode_slow(int argc, char **argv) {
    if (argc < 3) return 2;
    FILE *f = fopen(argv[0], "r");
    if (!f) {
        perror("loadgen: paths file");
        return 1;
    }
    long long length = atoll(argv[1]);
    int interval = atoi(argv[2]);
    int cap = 1024, n = 0;
    char **paths = malloc(sizeof(char *) * (size_t)cap);
    char line[600];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (n == cap) paths = realloc(paths, sizeof(char *) * (size_t)(cap *= 2));
        paths[n++] = strdup(line);
    }
    fclose(f);
    int *fds = malloc(sizeof(int) * (size_t)n);
    int open_n = 0, connect_fail = 0, closed_by_peer = 0, responses = 0, send_err = 0;
    long long trickled = 0;
    char first_resp[200] = "";
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        conn_t c;
        fds[i] = -1;
        if (conn_open(&c, 30) < 0) {
            connect_fail++;
            continue;
        }
        char hdr[1024];
        int h = snprintf(hdr, sizeof hdr,
                         "PATCH %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTus-Resumable: 1.0.0\r\n"
                         "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                         "Content-Length: %lld\r\n\r\n",
                         paths[i], g_port, length);
        if (send_all(c.fd, hdr, (size_t)h) < 0) {
            send_err++;
            close(c.fd);
            continue;
        }
        fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
        fds[i] = c.fd;
        open_n++;
    }
    printf("READY open=%d connect_fail=%d seconds=%.3f\n", open_n, connect_fail, now_s() - t0);
    fflush(stdout);

    struct pollfd *pf = malloc(sizeof(struct pollfd) * (size_t)(n + 1));
    int *idx = malloc(sizeof(int) * (size_t)(n + 1));
    double next_tick = now_s() + interval / 1000.0;
    int stop = 0;
    while (!stop) {
        int m = 0;
        pf[m].fd = 0;
        pf[m].events = POLLIN;
        idx[m++] = -1;
        for (int i = 0; i < n; i++)
            if (fds[i] >= 0) {
                pf[m].fd = fds[i];
                pf[m].events = POLLIN;
                idx[m++] = i;
            }
        int wait_ms = (int)((next_tick - now_s()) * 1000);
        if (wait_ms < 0) wait_ms = 0;
        int pr = poll(pf, (nfds_t)m, wait_ms);
        if (pr < 0 && errno != EINTR) break;
        for (int k = 0; pr > 0 && k < m; k++) {
            if (!pf[k].revents) continue;
            if (idx[k] < 0) {
                stop = 1; /* anything on stdin, or EOF */
                continue;
            }
            int i = idx[k];
            char buf[512];
            ssize_t got = recv(fds[i], buf, sizeof buf - 1, 0);
            if (got > 0) {
                responses++;
                buf[got] = 0;
                if (!first_resp[0]) {
                    buf[strcspn(buf, "\r\n")] = 0;
                    snprintf(first_resp, sizeof first_resp, "%.150s", buf);
                }
            } else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            } else {
                closed_by_peer++;
            }
            close(fds[i]);
            fds[i] = -1;
            open_n--;
        }
        if (now_s() >= next_tick) {
            for (int i = 0; i < n; i++) {
                if (fds[i] < 0) continue;
                ssize_t k = send(fds[i], g_body, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k == 1) trickled++;
                else if (k < 0 && errno != EAGAIN && errno != EINTR) {
                    send_err++;
                    close(fds[i]);
                    fds[i] = -1;
                    open_n--;
                }
            }
            next_tick += interval / 1000.0;
        }
    }
    printf("open=%d connect_fail=%d closed_by_peer=%d early_responses=%d send_errors=%d bytes_trickled=%lld "
           "first_response=\"%s\"\n",
           open_n, connect_fail, closed_by_peer, responses, send_err, trickled, first_resp);
    fflush(stdout);
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr,
                "usage: loadgen stream PORT discard|tus SIZE CHUNK TIMEOUT_S\n"
                "       loadgen burst PORT create|discard COUNT SIZE CONC TIMEOUT_S [PATH [HEADER ...]]\n"
                "       loadgen create PORT COUNT LENGTH\n"
                "       loadgen slow PORT PATHS_FILE LENGTH INTERVAL_MS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    g_port = atoi(argv[2]);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)g_port);
    g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_body = malloc(BODY_BUF);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < BODY_BUF; i++) { /* xorshift pattern, not zeros */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        g_body[i] = (char)x;
    }
    int rest = argc - 3;
    char **rv = argv + 3;
    int rc;
    if (!strcmp(argv[1], "stream")) rc = mode_stream(rest, rv);
    else if (!strcmp(argv[1], "burst")) rc = mode_burst(rest, rv);
    else if (!strcmp(argv[1], "create")) rc = mode_create(rest, rv);
    else if (!strcmp(argv[1], "slow")) rc = mode_slow(rest, rv);
    else rc = 2;
    if (rc == 2) fprintf(stderr, "loadgen: bad arguments\n");
    fflush(stdout);
    return rc;
}
