#include "qv_signal.h"
#include <signal.h>
#include <string.h>
#include <pthread.h>

static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig) { stop_signal = sig; }

int qv_signal_install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0) return -1;
    if (sigaction(SIGTERM, &sa, NULL) != 0) return -1;
    /* A parent may have spawned us with these signals blocked (the mask is inherited): unblock. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_UNBLOCK, &set, NULL) != 0) return -1;
    return 0;
}

int qv_signal_stop_requested(void) { return (int)stop_signal; }

/* Embedding sessions: the host keeps its own handlers outside a session's lifetime. */
static struct sigaction saved_int, saved_term;
static int session_handlers = 0;

int qv_signal_session_begin(void) {
    if (session_handlers++ > 0) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART; /* the host's blocking calls on other threads are not interrupted */
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    if (sigaction(SIGINT, &sa, &saved_int) != 0) { session_handlers--; return -1; }
    if (sigaction(SIGTERM, &sa, &saved_term) != 0) { sigaction(SIGINT, &saved_int, NULL); session_handlers--; return -1; }
    /* A process started with these signals blocked (the mask is inherited through exec) would never
     * see them: unblock them on the calling thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

void qv_signal_session_end(void) {
    if (session_handlers <= 0 || --session_handlers > 0) return;
    sigaction(SIGINT, &saved_int, NULL);
    sigaction(SIGTERM, &saved_term, NULL);
    stop_signal = 0;
}
