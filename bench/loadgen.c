/* Haven's load generator for bench/bench_sms_inbound.py (DESIGN §8: "load from a compiled
 * generator"). Compiled at bench time: gcc -O2 -pthread -o loadgen bench/loadgen.c
 *
 *   loadgen HOST PORT FILE CONCURRENCY SECONDS
 *
 * FILE holds complete HTTP requests, prepared (and signed) beforehand: each is a 4-byte
 * big-endian length followed by that many bytes. CONCURRENCY threads take the requests in
 * the file's order, each request exactly once, until all are sent or SECONDS have passed.
 * Every request goes over a fresh connection (the server's sync workers close each one) and
 * its latency runs from connect() to the end of the response. Only 127.0.0.1 (or another
 * loopback address) is meant as HOST.
 *
 * Prints one JSON line: {"ok": N, "errors": {"<status or error>": N, ...}, "wall": s,
 * "rps": N/s, "p50": ms, "p99": ms, "mean": ms}. "ok" counts 200 answers; the percentiles
 * are of those. Exit 0 when it ran (errors are reported, not fatal), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_STATUS 600
#define RESPONSE_BUFFER 65536

typedef struct {
    const char *data;
    uint32_t length;
} request_t;

static request_t *requests;
static size_t request_count;
static size_t next_request; /* taken with __atomic_fetch_add */
static struct sockaddr_in address;
static double deadline;
static double *latencies; /* one slot per request; -1 when not a 200 */
static long status_counts[MAX_STATUS];
static long connect_errors, io_errors, bad_responses;
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count(long *counter) {
    pthread_mutex_lock(&counts_lock);
    (*counter)++;
    pthread_mutex_unlock(&counts_lock);
}

static int send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t sent = send(fd, data, length, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

/* Send one request, read the whole response (to EOF or Content-Length); the status code,
 * or -1 for a connection error, -2 for an I/O error, -3 for a response that is not HTTP. */
static int exchange(const request_t *request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval timeout = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        close(fd);
        return -1;
    }
    if (send_all(fd, request->data, request->length) < 0) {
        close(fd);
        return -2;
    }
    char buffer[RESPONSE_BUFFER];
    size_t have = 0;
    long header_end = -1, content_length = -1;
    for (;;) {
        if (have == sizeof buffer) { /* a longer response: keep only what parsing needs */
            if (header_end < 0) break;
            if (content_length >= 0) content_length -= (long)have - header_end;
            header_end = 0;
            have = 0;
        }
        ssize_t got = recv(fd, buffer + have, sizeof buffer - have, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -2;
        }
        if (got == 0) break;
        have += (size_t)got;
        if (header_end < 0) {
            char *end = memmem(buffer, have, "\r\n\r\n", 4);
            if (end != NULL) {
                header_end = (long)(end - buffer) + 4;
                char *field = memmem(buffer, (size_t)header_end, "\r\nContent-Length:", 17);
                if (field == NULL) field = memmem(buffer, (size_t)header_end, "\r\ncontent-length:", 17);
                if (field != NULL) content_length = strtol(field + 17, NULL, 10);
            }
        }
        if (header_end >= 0 && content_length >= 0 && (long)have - header_end >= content_length)
            break;
    }
    close(fd);
    if (have < 12 || memcmp(buffer, "HTTP/1.", 7) != 0) return -3;
    int status = atoi(buffer + 9);
    return (status > 0 && status < MAX_STATUS) ? status : -3;
}

static void *worker(void *unused) {
    (void)unused;
    for (;;) {
        if (now_seconds() >= deadline) return NULL;
        size_t index = __atomic_fetch_add(&next_request, 1, __ATOMIC_RELAXED);
        if (index >= request_count) return NULL;
        double started = now_seconds();
        int status = exchange(&requests[index]);
        double elapsed = now_seconds() - started;
        if (status == 200) {
            latencies[index] = elapsed;
        } else if (status == -1) {
            count(&connect_errors);
        } else if (status == -2) {
            count(&io_errors);
        } else if (status == -3) {
            count(&bad_responses);
        }
        if (status > 0) count(&status_counts[status]);
    }
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *read_file(const char *path, size_t *size) {
    FILE *fh = fopen(path, "rb");
    if (fh == NULL) return NULL;
    struct stat info;
    if (fstat(fileno(fh), &info) < 0) {
        fclose(fh);
        return NULL;
    }
    char *data = malloc((size_t)info.st_size + 1);
    if (data == NULL || fread(data, 1, (size_t)info.st_size, fh) != (size_t)info.st_size) {
        free(data);
        fclose(fh);
        return NULL;
    }
    fclose(fh);
    *size = (size_t)info.st_size;
    return data;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT FILE CONCURRENCY SECONDS\n", argv[0]);
        return 2;
    }
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "loadgen: HOST must be an IPv4 address\n");
        return 2;
    }
    int concurrency = atoi(argv[4]);
    double seconds = atof(argv[5]);
    if (concurrency < 1 || concurrency > 256 || seconds <= 0) {
        fprintf(stderr, "loadgen: CONCURRENCY 1..256, SECONDS > 0\n");
        return 2;
    }
    size_t size = 0;
    char *data = read_file(argv[3], &size);
    if (data == NULL) {
        fprintf(stderr, "loadgen: cannot read %s\n", argv[3]);
        return 2;
    }
    size_t capacity = 1024;
    requests = malloc(capacity * sizeof *requests);
    for (size_t offset = 0; offset + 4 <= size;) {
        uint32_t length = ((uint32_t)(unsigned char)data[offset] << 24) |
                          ((uint32_t)(unsigned char)data[offset + 1] << 16) |
                          ((uint32_t)(unsigned char)data[offset + 2] << 8) |
                          (uint32_t)(unsigned char)data[offset + 3];
        offset += 4;
        if (length > size - offset) {
            fprintf(stderr, "loadgen: %s is truncated\n", argv[3]);
            return 2;
        }
        if (request_count == capacity) {
            capacity *= 2;
            requests = realloc(requests, capacity * sizeof *requests);
        }
        requests[request_count].data = data + offset;
        requests[request_count].length = length;
        request_count++;
        offset += length;
    }
    latencies = malloc((request_count + 1) * sizeof *latencies);
    for (size_t i = 0; i < request_count; i++) latencies[i] = -1;

    pthread_t threads[256];
    double started = now_seconds();
    deadline = started + seconds;
    for (int i = 0; i < concurrency; i++) pthread_create(&threads[i], NULL, worker, NULL);
    for (int i = 0; i < concurrency; i++) pthread_join(threads[i], NULL);
    double wall = now_seconds() - started;

    size_t ok = 0;
    double total = 0;
    for (size_t i = 0; i < request_count; i++) {
        if (latencies[i] >= 0) {
            latencies[ok++] = latencies[i];
            total += latencies[i];
        }
    }
    qsort(latencies, ok, sizeof *latencies, compare_doubles);
    /* Nearest rank, as bench.common.percentile. */
    double p50 = ok ? latencies[(size_t)(0.50 * (double)(ok - 1) + 0.5)] * 1000 : -1;
    double p99 = ok ? latencies[(size_t)(0.99 * (double)(ok - 1) + 0.5)] * 1000 : -1;
    printf("{\"ok\": %zu, \"errors\": {", ok);
    const char *separator = "";
    for (int status = 1; status < MAX_STATUS; status++) {
        if (status != 200 && status_counts[status] > 0) {
            printf("%s\"%d\": %ld", separator, status, status_counts[status]);
            separator = ", ";
        }
    }
    if (connect_errors) { printf("%s\"connect\": %ld", separator, connect_errors); separator = ", "; }
    if (io_errors) { printf("%s\"io\": %ld", separator, io_errors); separator = ", "; }
    if (bad_responses) { printf("%s\"not_http\": %ld", separator, bad_responses); }
    printf("}, \"sent\": %zu, \"wall\": %.6f, \"rps\": %.3f, \"p50\": %.3f, \"p99\": %.3f, "
           "\"mean\": %.3f}\n",
           next_request < request_count ? next_request : request_count, wall,
           wall > 0 ? (double)ok / wall : 0.0, p50, p99, ok ? total / (double)ok * 1000 : -1.0);
    return 0;
}
