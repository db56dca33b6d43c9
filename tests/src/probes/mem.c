/* The memory tests' probe: `mem MIB [fork] [wait]` allocates and touches
 * MIB mebibytes in 1 MiB steps, says `held MIB`, then sleeps until killed.
 * With `fork`, first forks a child that only sleeps (and says `child`), so
 * that a test can see that an OOM kill ends every process of the dyno. With
 * `wait`, says `ready` and waits for SIGUSR1 before allocating. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One line in one write(2): the probe and its child share the pipe, and
 * stdio may split a line into several writes that the other's line lands
 * between ("readychild"). */
static void say(const char *fmt, long n) {
    char line[64];
    int len = snprintf(line, sizeof line, fmt, n);
    if (len > 0) {
        ssize_t w = write(1, line, (size_t)len);
        (void)w;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mem MIB [fork] [wait]\n");
        return 2;
    }
    long mib = atol(argv[1]);
    int fork_child = 0, wait_signal = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "fork") == 0) fork_child = 1;
        if (strcmp(argv[i], "wait") == 0) wait_signal = 1;
    }
    if (fork_child) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            say("child\n", 0);
            for (;;) pause();
        }
    }
    if (wait_signal) {
        sigset_t set;
        int sig;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        say("ready\n", 0);
        sigwait(&set, &sig);
    }
    for (long i = 0; i < mib; i++) {
        char *chunk = malloc(1 << 20);
        if (chunk == NULL) {
            say("malloc failed at %ld\n", i);
            return 1;
        }
        memset(chunk, 1 + (int)(i % 250), 1 << 20);
    }
    say("held %ld\n", mib);
    for (;;) pause();
}
