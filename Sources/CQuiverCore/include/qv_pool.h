#ifndef QV_POOL_H
#define QV_POOL_H
/* A fixed pool of threads that run one task at a time. The calling thread is thread 0. */
typedef struct qv_pool qv_pool;
typedef void (*qv_pool_task)(void *context, int thread, int nthreads);

/* Creates a pool of `nthreads` (>= 1; nthreads - 1 threads are started). NULL on failure. */
qv_pool *qv_pool_create(int nthreads);
/* Runs task(context, t, n) on every thread t in [0, n) and returns when all have finished. */
void qv_pool_run(qv_pool *pool, qv_pool_task task, void *context);
int qv_pool_size(const qv_pool *pool);
/* Stops and joins the threads. NULL is accepted. */
void qv_pool_destroy(qv_pool *pool);
/* The half-open range [*begin, *end) of n items that thread t of nthreads owns. */
void qv_pool_split(int64_t n, int thread, int nthreads, int64_t *begin, int64_t *end);
#endif
