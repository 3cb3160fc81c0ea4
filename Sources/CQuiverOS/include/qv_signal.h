#ifndef QV_SIGNAL_H
#define QV_SIGNAL_H
/* Installs SIGINT and SIGTERM handlers that only record the request (async-signal-safe). */
int qv_signal_install_stop_handlers(void);
/* The signal number that asked to stop, or 0. */
int qv_signal_stop_requested(void);
/* For embedding sessions (call from one thread at a time; counted): the first begin saves the
 * host's SIGINT/SIGTERM dispositions and installs recording handlers with SA_RESTART, clearing the
 * flag, and unblocks both on the calling thread; the last end restores the host's dispositions and
 * clears the flag. */
int qv_signal_session_begin(void);
void qv_signal_session_end(void);
#endif
