/* Process plumbing the supervisor and its workers need, wrapped once. Prefix qv_os_. */
#ifndef CQUIVEROS_H
#define CQUIVEROS_H
#include <stdint.h>
#include <sys/types.h>

/* Spawns `path` with argv (NULL-terminated) and the current environment via posix_spawn:
 * pass_fds[k] becomes descriptor 3 + k in the child, every descriptor above 2 + npass is closed
 * (the child inherits stdin/stdout/stderr and the passed ones only), the
 * signal mask is emptied and SIGINT/SIGTERM/SIGCHLD/SIGPIPE/SIGHUP reset to their defaults, and the
 * child leads a new process group (so a terminal's Ctrl-C reaches the supervisor only).
 * Returns 0 and the pid, or an errno value. */
int qv_os_spawn(const char *path, char *const argv[], const int *pass_fds, int npass, pid_t *pid_out);

/* A TCP socket bound to host:port (port 0: any free port) and listening, close-on-exec, with
 * SO_REUSEADDR; the bound port in *port_out. Returns the fd, or -1 with errno (EAI errors as
 * EADDRNOTAVAIL). Used to hand public sockets to workers so a restarted worker keeps the port. */
int qv_os_tcp_listen(const char *host, int port, int *port_out);

/* Asks the kernel to send `signal` to this process when its parent dies, then checks the parent
 * is still `expected_parent` (closing the race). Returns 0, or -1 if the parent is already gone. */
int qv_os_die_with_parent(int signal, pid_t expected_parent);

/* Installs handlers for SIGCHLD, SIGINT, SIGTERM and SIGHUP that write the signal number as one
 * byte into a non-blocking, close-on-exec pipe (a self-pipe: it works whichever thread the kernel
 * delivers a signal to), and returns the pipe's read end, or -1 with errno. Call once. */
int qv_os_signal_pipe_for_supervisor(void);

/* Reads one signal number from that pipe: the number, 0 if none is pending, -1 on error. */
int qv_os_read_signal(int fd);

/* accept4 with SOCK_CLOEXEC; -1 with errno (EAGAIN when nothing is pending on a non-blocking socket). */
int qv_os_accept(int listen_fd);

/* The path of this process's executable (from /proc/self/exe) into buf; 0 or -1. */
int qv_os_executable_path(char *buf, size_t size);
#include "qv_signal.h"
/* A non-blocking, close-on-exec eventfd (a counter one process writes and another polls). -1 on error. */
int qv_os_eventfd(void);

/* `value` with `digits` decimals ("%.*f") into `buf` (NUL-terminated, truncated to `size`);
 * returns snprintf's result. A plain C call: Swift's CVarArg path allocates on every call. */
int qv_os_format_fixed(char *buf, size_t size, double value, int digits);
#endif
