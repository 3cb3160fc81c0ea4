#ifndef QV_SIGNAL_H
#define QV_SIGNAL_H
/* Installs SIGINT and SIGTERM handlers that only record the request (async-signal-safe). */
int qv_signal_install_stop_handlers(void);
/* The signal number that asked to stop, or 0. */
int qv_signal_stop_requested(void);
#endif
