/* test_pool.c — ctest: the thread pool runs every job of every run exactly once, on the thread the contract names,
 * across thousands of back-to-back runs and runs after workers fell asleep; it frees cleanly at any moment. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "internal.h"
#include "check.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct counter_job {
    long count;        /* times this job ran */
    pthread_t ran_on;  /* the thread of the last run */
    char pad[64];      /* one cache line per job: no false sharing in the stress runs */
} counter_job;

static void count(void *arg) {
    counter_job *j = arg;
    j->count++;
    j->ran_on = pthread_self();
}

static void nap_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static void check_pool(int n_threads) {
    pbs2p_pool *p = NULL;
    CHECK(pbs2p_pool_new(n_threads, &p) == PBS2P_OK && p, "pool of %d: %s", n_threads, pbs2p_last_error());
    if (!p) return;
    CHECK(pbs2p_pool_threads(p) == n_threads, "pool of %d reports %d threads", n_threads, pbs2p_pool_threads(p));
    counter_job jobs[16];
    memset(jobs, 0, sizeof jobs);
    long want[16] = {0};
    for (int run = 0; run < 4000; run++) {
        int n = 1 + run % n_threads;
        pbs2p_pool_run(p, count, jobs, sizeof jobs[0], n);
        for (int i = 0; i < n; i++) want[i]++;
        CHECK(pthread_equal(jobs[0].ran_on, pthread_self()), "job 0 must run on the caller");
        if (run % 1000 == 999) nap_us(20000); /* let the workers fall asleep on the condition variable */
    }
    for (int i = 0; i < n_threads; i++)
        CHECK(jobs[i].count == want[i], "pool of %d, job %d ran %ld times, want %ld", n_threads, i, jobs[i].count, want[i]);
    for (int i = 1; i < n_threads; i++)
        CHECK(!pthread_equal(jobs[i].ran_on, pthread_self()), "job %d ran on the caller", i);
    pbs2p_pool_free(p); /* workers may be spinning or asleep */
}

int main(void) {
    for (int n = 1; n <= 4; n++) check_pool(n);
    pbs2p_pool *p = NULL;
    CHECK(pbs2p_pool_new(0, &p) == PBS2P_ERR_ARGUMENT && !p, "0 threads must be refused");
    CHECK(pbs2p_pool_new(PBS2P_MODEL_MAX_THREADS + 1, &p) == PBS2P_ERR_ARGUMENT && !p, "too many threads refused");
    CHECK(pbs2p_pool_new(3, &p) == PBS2P_OK, "pool of 3");
    pbs2p_pool_free(p); /* freed before any run */
    pbs2p_pool_free(NULL);
    counter_job solo = {0};
    pbs2p_pool_run(NULL, count, &solo, sizeof solo, 1); /* NULL pool: the caller runs it */
    CHECK(solo.count == 1, "NULL pool ran the job %ld times", solo.count);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("test_pool: ok\n");
    return 0;
}
