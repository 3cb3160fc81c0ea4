#include "qv_common.h"
#include "qv_pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Workers and the caller spin this many times (about 20 microseconds) waiting for the next
 * task or for the others to finish before they block on a condition variable: a step hands work
 * to the pool several times, and a futex sleep and wake-up per hand-off costs more than the wait. */
#define QV_POOL_SPIN 1000

struct qv_pool {
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t start;
    pthread_cond_t done;
    _Atomic uint64_t generation;
    _Atomic int pending;
    _Atomic int stopping;
    qv_pool_task task;
    void *context;
};

typedef struct { qv_pool *pool; int index; } worker_arg;

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    qv_pool *pool = arg.pool;
    uint64_t seen = 0;
    for (;;) {
        for (int k = 0; k < QV_POOL_SPIN; k++) {
            if (atomic_load_explicit(&pool->generation, memory_order_acquire) != seen ||
                atomic_load_explicit(&pool->stopping, memory_order_relaxed))
                break;
            cpu_relax();
        }
        pthread_mutex_lock(&pool->lock);
        while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stopping))
            pthread_cond_wait(&pool->start, &pool->lock);
        if (atomic_load(&pool->stopping)) { pthread_mutex_unlock(&pool->lock); return NULL; }
        seen = atomic_load(&pool->generation);
        qv_pool_task task = pool->task;
        void *context = pool->context;
        pthread_mutex_unlock(&pool->lock);

        task(context, arg.index, pool->nthreads);

        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

qv_pool *qv_pool_create(int nthreads) {
    if (nthreads < 1) return NULL;
    qv_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) return NULL;
    pool->nthreads = nthreads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->start, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!pool->threads) { free(pool); return NULL; }
    for (int t = 1; t < nthreads; t++) {
        worker_arg *arg = malloc(sizeof(*arg));
        if (!arg) { pool->nthreads = t; qv_pool_destroy(pool); return NULL; }
        arg->pool = pool;
        arg->index = t;
        if (pthread_create(&pool->threads[t], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->nthreads = t;
            qv_pool_destroy(pool);
            return NULL;
        }
    }
    return pool;
}

void qv_pool_run(qv_pool *pool, qv_pool_task task, void *context) {
    if (pool->nthreads == 1) { task(context, 0, 1); return; }
    pthread_mutex_lock(&pool->lock);
    pool->task = task;
    pool->context = context;
    atomic_store(&pool->pending, pool->nthreads - 1);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->lock);

    task(context, 0, pool->nthreads);

    for (int k = 0; k < QV_POOL_SPIN && atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; k++) cpu_relax();
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&pool->lock);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done, &pool->lock);
        pthread_mutex_unlock(&pool->lock);
    }
}

int qv_pool_size(const qv_pool *pool) { return pool->nthreads; }

void qv_pool_destroy(qv_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stopping, 1);
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->lock);
    for (int t = 1; t < pool->nthreads; t++) pthread_join(pool->threads[t], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->start);
    pthread_cond_destroy(&pool->done);
    free(pool->threads);
    free(pool);
}

void qv_pool_split(int64_t n, int thread, int nthreads, int64_t *begin, int64_t *end) {
    *begin = n * thread / nthreads;
    *end = n * (thread + 1) / nthreads;
}
