/*
 * The keyring test's probe (tests/tests/keyring.rs), built static by the
 * test kit (tests/src/probe.rs) because a dyno's stack has no libc. Raw
 * syscalls only; every result is printed as a `name=value` line, the value
 * 0 (or a key's serial) on success and the errno on failure.
 *
 *   keyring host-session DESC PAYLOAD -- PROG ARG...
 *       (on the host, as root) joins a new anonymous session keyring, adds
 *       a "user" key DESC to it, prints `root_key=SERIAL` and
 *       `session=SERIAL` on stderr, and execs PROG in that session
 *   keyring add DESC PAYLOAD      add_key("user", DESC) to the session keyring
 *   keyring find DESC [SERIAL]    looks for DESC (and reads SERIAL) the ways an
 *                                 attacker would, printing any payload found
 *   keyring syscalls              io_uring_setup, userfaultfd, perf_event_open, bpf
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* 0 when a syscall succeeded, else its errno. */
static long status(long r) { return r < 0 ? errno : 0; }

static long add_key(const char *desc, const char *payload, long keyring) {
    return syscall(SYS_add_key, "user", desc, payload, strlen(payload), keyring);
}

/* Reads key `id`: prints `NAME=0` and `NAME_payload=…`, or `NAME=errno`. */
static void read_key(const char *name, long id) {
    char buf[256];
    long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1);
    if (n < 0) {
        printf("%s=%d\n", name, errno);
        return;
    }
    buf[n < (long)sizeof buf - 1 ? n : (long)sizeof buf - 1] = 0;
    printf("%s=0\n%s_payload=%s\n", name, name, buf);
}

static int host_session(int argc, char **argv) {
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "usage: keyring host-session DESC PAYLOAD -- PROG ARG...\n");
        return 125;
    }
    long session = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL);
    if (session < 0) {
        perror("keyctl(KEYCTL_JOIN_SESSION_KEYRING)");
        return 125;
    }
    long key = add_key(argv[2], argv[3], KEY_SPEC_SESSION_KEYRING);
    if (key < 0) {
        perror("add_key");
        return 125;
    }
    fprintf(stderr, "session=%ld\nroot_key=%ld\n", session, key);
    execv(argv[5], argv + 5);
    perror(argv[5]);
    return 125;
}

static void find(const char *desc, const char *serial) {
    long session = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    if (session < 0)
        printf("session=%d\n", errno);
    else
        printf("session=0\nsession_id=%ld\n", session);
    long search = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", desc, 0);
    if (search < 0) {
        printf("search=%d\n", errno);
    } else {
        printf("search=0\n");
        read_key("read_found", search);
    }
    long request = syscall(SYS_request_key, "user", desc, NULL, 0);
    if (request < 0) {
        printf("request=%d\n", errno);
    } else {
        printf("request=0\n");
        read_key("read_requested", request);
    }
    if (serial)
        read_key("read_by_serial", strtol(serial, NULL, 10));
}

static void syscalls(void) {
    unsigned char io_uring_params[120] = {0};
    printf("io_uring_setup=%ld\n", status(syscall(SYS_io_uring_setup, 1, io_uring_params)));
    printf("userfaultfd=%ld\n", status(syscall(SYS_userfaultfd, UFFD_USER_MODE_ONLY)));
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    printf("perf_event_open=%ld\n", status(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0)));
    union bpf_attr map;
    memset(&map, 0, sizeof map);
    map.map_type = BPF_MAP_TYPE_ARRAY;
    map.key_size = 4;
    map.value_size = 4;
    map.max_entries = 1;
    printf("bpf=%ld\n", status(syscall(SYS_bpf, BPF_MAP_CREATE, &map, sizeof map)));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "host-session") == 0)
        return host_session(argc, argv);
    if (argc == 4 && strcmp(argv[1], "add") == 0) {
        long key = add_key(argv[2], argv[3], KEY_SPEC_SESSION_KEYRING);
        printf("add=%ld\n", key < 0 ? (long)errno : 0L);
        if (key >= 0)
            printf("serial=%ld\n", key);
        return 0;
    }
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "find") == 0) {
        find(argv[2], argc == 4 ? argv[3] : NULL);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "syscalls") == 0) {
        syscalls();
        return 0;
    }
    fprintf(stderr, "usage: keyring host-session|add|find|syscalls …\n");
    return 2;
}
