/*
 * The network test's probe (tests/tests/network.rs), built static by the
 * test kit (tests/src/probe.rs) because a dyno's stack has no libc. Every
 * result is a `name=value` line on stdout, errno values as numbers (0 when
 * the call worked), so that a refusal (ECONNREFUSED), an unreachable host
 * and a timeout (ETIMEDOUT) are told apart.
 *
 *   net connect ADDR PORT MS     one TCP connect (ADDR: IPv4, or IPv6 with an
 *                                optional %IFNAME), MS ms at most; on success
 *                                prints the first line the server sends as got=
 *   net hold ADDR PORT N MS      opens N connections and keeps them (each
 *                                waits for the server's first line), then
 *                                tries one more: held=K, extra=ERRNO; then
 *                                keeps them all until killed
 *   net tcpfill PAIRS            PAIRS loopback connections whose both ends
 *                                write without the other reading, until the
 *                                kernel refuses more: filled=BYTES; then
 *                                keeps them until killed
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_addr(const char *text, int port, struct sockaddr_storage *ss, socklen_t *len) {
    char host[128];
    snprintf(host, sizeof host, "%s", text);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof *v4;
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    char *scope = strchr(host, '%');
    if (scope) {
        *scope++ = 0;
        v6->sin6_scope_id = if_nametoindex(scope);
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

/* A connected socket, or -errno. */
static int dial(const char *addr, int port, int ms) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_addr(addr, port, &ss, &len) != 0) {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            return -e;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, ms) != 1) {
            close(fd);
            return -ETIMEDOUT;
        }
        int err = 0;
        socklen_t elen = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err != 0) {
            close(fd);
            return -err;
        }
    }
    return fd;
}

/* The server's first line (up to 200 bytes) within ms, newline stripped. */
static void first_line(int fd, int ms, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) != 1) {
            break;
        }
        ssize_t r = read(fd, out + n, cap - 1 - n);
        if (r <= 0) {
            break;
        }
        n += r;
        out[n] = 0;
        if (strchr(out, '\n')) {
            break;
        }
    }
    char *nl = strchr(out, '\n');
    if (nl) {
        *nl = 0;
    }
}

static int do_connect(char **argv) {
    int ms = atoi(argv[3]);
    int fd = dial(argv[1], atoi(argv[2]), ms);
    printf("connect=%d\n", fd < 0 ? -fd : 0);
    if (fd >= 0) {
        char line[256];
        first_line(fd, ms, line, sizeof line);
        printf("got=%s\n", line);
        close(fd);
    }
    return 0;
}

static _Noreturn void do_hold(char **argv) {
    int port = atoi(argv[2]), n = atoi(argv[3]), ms = atoi(argv[4]);
    int held = 0;
    for (int i = 0; i < n; i++) {
        int fd = dial(argv[1], port, ms);
        if (fd < 0) {
            printf("failed=%d\n", -fd);
            break;
        }
        char line[256];
        first_line(fd, ms, line, sizeof line);
        held++;
    }
    printf("held=%d\n", held);
    int fd = dial(argv[1], port, ms);
    printf("extra=%d\n", fd < 0 ? -fd : 0);
    printf("holding\n");
    for (;;) {
        pause();
    }
}

static long fill(int fd) {
    static char buf[65536];
    long total = 0;
    for (;;) {
        ssize_t w = write(fd, buf, sizeof buf);
        if (w <= 0) {
            return total;
        }
        total += w;
    }
}

static _Noreturn void do_tcpfill(char **argv) {
    int pairs = atoi(argv[1]);
    long total = 0;
    int made = 0;
    for (int i = 0; i < pairs; i++) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof a;
        if (l < 0 || bind(l, (struct sockaddr *)&a, alen) != 0 || listen(l, 1) != 0 ||
            getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
            printf("listen_error=%d\n", errno);
            break;
        }
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, alen) != 0) {
            printf("connect_error=%d\n", errno);
            break;
        }
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0) {
            printf("accept_error=%d\n", errno);
            break;
        }
        close(l);
        fcntl(c, F_SETFL, O_NONBLOCK);
        fcntl(s, F_SETFL, O_NONBLOCK);
        total += fill(c) + fill(s);
        made++;
    }
    printf("pairs=%d\nfilled=%ld\nholding\n", made, total);
    for (;;) {
        pause();
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 5 && strcmp(argv[1], "connect") == 0) {
        return do_connect(argv + 1);
    }
    if (argc == 6 && strcmp(argv[1], "hold") == 0) {
        do_hold(argv + 1);
    }
    if (argc == 3 && strcmp(argv[1], "tcpfill") == 0) {
        do_tcpfill(argv + 1);
    }
    fprintf(stderr, "usage: net connect ADDR PORT MS | hold ADDR PORT N MS | tcpfill PAIRS\n");
    return 2;
}
