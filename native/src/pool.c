/* pool.c — a fixed team of worker threads that a model keeps for its whole life, so that the ~200 matrix products of
 * one decoded token do not each pay a thread start (~20-50 us). Workers spin briefly on a generation counter, then
 * sleep on a condition variable; the caller runs job 0 itself and spins until the others are done. */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax(void) { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax(void) { __asm__ __volatile__("yield"); }
#else
static inline void cpu_relax(void) {}
#endif

/* Pause loops a worker spins before it sleeps: a few hundred microseconds, longer than the gap between two products
 * of one forward pass, far shorter than a user's pause between calls. */
#define SPIN_BEFORE_SLEEP 4096

typedef struct worker {
    struct pbs2p_pool *pool;
    int index;  /* runs job index + 1 */
    pthread_t tid;
} worker;

struct pbs2p_pool {
    int n_workers;              /* threads besides the caller */
    worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint generation;     /* bumped (under mu) for every run and for shutdown */
    atomic_int pending;         /* workers that have not finished the current generation */
    int stop;                   /* set (under mu) before the last bump */
    void (*fn)(void *);
    char *jobs;
    size_t job_size;
    int n_jobs;
};

static void *worker_main(void *arg) {
    worker *w = arg;
    pbs2p_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = g;
        if (p->stop) return NULL;
        if (w->index + 1 < p->n_jobs) p->fn(p->jobs + (size_t)(w->index + 1) * p->job_size);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

static void stop_workers(pbs2p_pool *p, int started) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++) pthread_join(p->workers[i].tid, NULL);
}

pbs2p_status pbs2p_pool_new(int n_threads, pbs2p_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > PBS2P_MODEL_MAX_THREADS)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_threads %d must be in 1..%d", n_threads, PBS2P_MODEL_MAX_THREADS);
    pbs2p_pool *p = calloc(1, sizeof *p);
    if (!p) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the thread pool");
    p->n_workers = n_threads - 1;
    p->workers = p->n_workers ? calloc((size_t)p->n_workers, sizeof *p->workers) : NULL;
    if (p->n_workers && !p->workers) {
        free(p);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the thread pool");
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0 || pthread_cond_init(&p->wake, NULL) != 0) {
        free(p->workers);
        free(p);
        return pbs2p_fail(PBS2P_ERR_THREAD, "could not create the thread pool's mutex or condition variable");
    }
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    for (int i = 0; i < p->n_workers; i++) {
        p->workers[i] = (worker){p, i, 0};
        if (pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]) != 0) {
            stop_workers(p, i);
            pthread_cond_destroy(&p->wake);
            pthread_mutex_destroy(&p->mu);
            free(p->workers);
            free(p);
            return pbs2p_fail(PBS2P_ERR_THREAD, "could not start worker thread %d of %d", i + 1, n_threads);
        }
    }
    *out = p;
    return PBS2P_OK;
}

void pbs2p_pool_free(pbs2p_pool *p) {
    if (!p) return;
    stop_workers(p, p->n_workers);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int pbs2p_pool_threads(const pbs2p_pool *p) { return p ? p->n_workers + 1 : 1; }

void pbs2p_pool_run(pbs2p_pool *p, void (*fn)(void *), void *jobs, size_t job_size, int n_jobs) {
    if (!p || p->n_workers == 0 || n_jobs <= 1) {
        for (int i = 0; i < n_jobs; i++) fn((char *)jobs + (size_t)i * job_size);
        return;
    }
    p->fn = fn;
    p->jobs = jobs;
    p->job_size = job_size;
    p->n_jobs = n_jobs;
    atomic_store_explicit(&p->pending, p->n_workers, memory_order_relaxed);
    pthread_mutex_lock(&p->mu); /* a worker about to sleep checks the generation under mu: no lost wake-up */
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(jobs);
    for (unsigned spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_BEFORE_SLEEP) cpu_relax();
        else sched_yield();
    }
}
