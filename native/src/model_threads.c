/* model_threads.c — splitting the forward's work over the model's thread pool: how many threads a step is worth
 * (threads_for), and the dense matrix products (the head, grid-tier linears) with their rows split across them.
 * The forward (model_forward.c) says what each step computes; this file says only how it is shared out. */
#include "model_internal.h"

#include <stdlib.h>

/* ----------------------------------------------------------------------------------------------------
 * Threads: the model's pool runs job 0 on the caller and jobs 1..n-1 on its workers; each job writes its own
 * outputs, so results do not depend on the number of threads */

int threads_for(pbs2p_pool *pool, size_t work, int n_max) {
    size_t useful = work / pbs2p_min_work_per_pool_thread();
    int n = pbs2p_pool_threads(pool) < n_max ? pbs2p_pool_threads(pool) : n_max;
    return (size_t)n > useful ? (useful > 0 ? (int)useful : 1) : n;
}

/* ----------------------------------------------------------------------------------------------------
 * Dense matrices (the head, grid-tier linears): Y (T, R) = X (T, K) W^T, rows split across threads */

typedef struct dense_job {
    pbs2p_dense_fn dense;       /* F16 */
    pbs2p_qdense_fn qdense;     /* the other types, on A */
    const pbs2p_dense *w;       /* (R, K) */
    const float *X;             /* (T, K) */
    const pbs2p_q8_acts *A;     /* X quantized, or NULL for F16 */
    float *Y;                   /* (T, R) */
    int32_t T, r0, r1;
    float *rows;                /* (PBS2P_DENSE_ROWS, K) this job's decoded rows (F16) */
} dense_job;

/* Tokens per pass over a job's rows: each row is decoded once per pass and its dots read a (DENSE_TOKENS, K) block
 * of X that stays in cache (48 x 1536 floats = 288 KiB); one pass over all of a 2048-token prompt would stream X
 * from memory once per row. 48: a multiple of every variant's tile of tokens (dense_tile.h). A dot does not depend
 * on the other tokens, so the passes change no result. */
#define DENSE_TOKENS 48

static void run_dense(void *arg) {
    const dense_job *j = arg;
    const size_t K = (size_t)j->w->cols, R = (size_t)j->w->rows;
    for (int32_t t0 = 0; t0 < j->T; t0 += DENSE_TOKENS) {
        const int32_t n = j->T - t0 < DENSE_TOKENS ? j->T - t0 : DENSE_TOKENS;
        if (j->A) {
            const pbs2p_q8_acts At = pbs2p_q8_acts_at(j->A, (size_t)t0);
            j->qdense(j->w, &At, (size_t)n, j->Y + (size_t)t0 * R, R, j->r0, j->r1);
        } else {
            j->dense(j->w, j->X + (size_t)t0 * K, (size_t)n, K, j->Y + (size_t)t0 * R, R, j->r0, j->r1, j->rows);
        }
    }
}

typedef struct quantize_job {
    const float *X;
    const pbs2p_q8_acts *A;
    size_t t0, t1;
} quantize_job;

static void run_quantize(void *arg) {
    const quantize_job *j = arg;
    pbs2p_q8_acts_quantize(j->X, j->t0, j->t1, j->A);
}

pbs2p_status quantize_acts(pbs2p_pool *pool, const float *X, int32_t T, int32_t K, void **mem, pbs2p_q8_acts *A) {
    *mem = malloc(pbs2p_q8_acts_bytes((size_t)T, K));
    if (!*mem) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the int8 activations of %d tokens", (int)T);
    pbs2p_q8_acts_init(*mem, (size_t)T, K, A);
    quantize_job qj[PBS2P_MODEL_MAX_THREADS];
    const int nt = pbs2p_pool_threads(pool) < PBS2P_MODEL_MAX_THREADS ? pbs2p_pool_threads(pool) : PBS2P_MODEL_MAX_THREADS;
    const int nq = T >= 4 * nt ? nt : 1; /* a prompt's tokens split over the threads; one token alone */
    for (int b = 0; b < nq; b++)
        qj[b] = (quantize_job){X, A, (size_t)T * (size_t)b / (size_t)nq, (size_t)T * (size_t)(b + 1) / (size_t)nq};
    pbs2p_pool_run(pool, run_quantize, qj, sizeof qj[0], nq);
    return PBS2P_OK;
}

/* The rows of W split across nt jobs on multiples of 4 (the SIMD variants take rows by four). */
static void run_dense_jobs(pbs2p_pool *pool, const pbs2p_kernels *k, const pbs2p_dense *W, const float *X,
                           const pbs2p_q8_acts *A, int32_t T, float *Y, int nt, float *rows) {
    const int32_t R = W->rows, K = W->cols;
    dense_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int b = 0; b < nt; b++)
        jobs[b] = (dense_job){k->dense, k->qdense, W, X, A, Y, T, (int32_t)((int64_t)R / 4 * b / nt * 4),
                              b + 1 == nt ? R : (int32_t)((int64_t)R / 4 * (b + 1) / nt * 4),
                              A ? NULL : rows + (size_t)b * PBS2P_DENSE_ROWS * (size_t)K};
    pbs2p_pool_run(pool, run_dense, jobs, sizeof jobs[0], nt);
}

static int dense_threads(pbs2p_pool *pool, const pbs2p_dense *W, int32_t T) {
    return threads_for(pool, (size_t)W->rows * (size_t)W->cols * (size_t)T, PBS2P_MODEL_MAX_THREADS);
}

pbs2p_status dense_matmul_q8(pbs2p_pool *pool, const pbs2p_dense *W, const pbs2p_q8_acts *A, int32_t T, float *Y) {
    pbs2p_kernels k;
    if (!pbs2p_kernel_current(&k)) return PBS2P_ERR_NO_KERNEL; /* message already set */
    run_dense_jobs(pool, &k, W, NULL, A, T, Y, dense_threads(pool, W, T), NULL);
    return PBS2P_OK;
}

pbs2p_status dense_matmul(pbs2p_pool *pool, const pbs2p_dense *W, const float *X, int32_t T, float *Y) {
    pbs2p_kernels k;
    if (!pbs2p_kernel_current(&k)) return PBS2P_ERR_NO_KERNEL; /* message already set */
    const int nt = dense_threads(pool, W, T);
    void *mem;
    pbs2p_status st;
    if (W->type != PBS2P_GGML_F16) { /* the activations quantized once, read by every job */
        pbs2p_q8_acts A;
        if ((st = quantize_acts(pool, X, T, W->cols, &mem, &A)) != PBS2P_OK) return st;
        run_dense_jobs(pool, &k, W, X, &A, T, Y, nt, NULL);
    } else { /* F16: each job's decoded rows */
        mem = malloc((size_t)nt * PBS2P_DENSE_ROWS * (size_t)W->cols * sizeof(float));
        if (!mem) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a dense matrix product");
        run_dense_jobs(pool, &k, W, X, NULL, T, Y, nt, mem);
    }
    free(mem);
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * Row-wise float math of a prompt (activations, norms): its elements or rows split across threads, each computed as
 * alone, so the results are the single thread's */

typedef struct rows_job {
    const config *c;
    float *out, *hb;
    const float *x, *up, *weight, *bias;
    size_t lo, hi;
    act_kind act;
} rows_job;

static void run_activate(void *arg) {
    const rows_job *j = arg;
    activate(j->hb + j->lo, j->up ? j->up + j->lo : NULL, j->hi - j->lo, j->act);
}

void activate_pool(pbs2p_pool *pool, float *hb, const float *up, size_t n, act_kind act) {
    /* about 16 operations an element; split on multiples of 16 elements */
    const int nt = threads_for(pool, n * 16, PBS2P_MODEL_MAX_THREADS);
    rows_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int b = 0; b < nt; b++)
        jobs[b] = (rows_job){.hb = hb, .up = up, .act = act, .lo = n / 16 * (size_t)b / (size_t)nt * 16,
                             .hi = b + 1 == nt ? n : n / 16 * (size_t)(b + 1) / (size_t)nt * 16};
    pbs2p_pool_run(pool, run_activate, jobs, sizeof jobs[0], nt);
}

static void run_norms(void *arg) {
    const rows_job *j = arg;
    const size_t D = (size_t)j->c->n_embd;
    for (size_t t = j->lo; t < j->hi; t++)
        norm_row(j->out + t * D, j->x + t * D, j->weight, j->bias, (int32_t)D, j->c->norm, j->c->eps);
}

void norm_rows_pool(pbs2p_pool *pool, const config *c, float *rows, const float *x, int32_t T, const float *weight,
                    const float *bias) {
    const int nt = threads_for(pool, (size_t)T * (size_t)c->n_embd * 4, PBS2P_MODEL_MAX_THREADS);
    rows_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int b = 0; b < nt; b++)
        jobs[b] = (rows_job){.c = c, .out = rows, .x = x, .weight = weight, .bias = bias,
                             .lo = (size_t)T * (size_t)b / (size_t)nt, .hi = (size_t)T * (size_t)(b + 1) / (size_t)nt};
    pbs2p_pool_run(pool, run_norms, jobs, sizeof jobs[0], nt);
}
