/* gemm.c — public gemv/gemm: argument checks, per-region pre-scaled activations, row-parallel threads (started for
 * the call, or a model's pool). */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PBS2P_MAX_THREADS 256
/* Weight x token products per thread below which another thread costs more to start (~30 us) than it
 * saves. The environment variable PBS2P_MIN_WORK_PER_THREAD overrides it (tests set 1 to force threads). */
#define PBS2P_MIN_WORK_PER_THREAD ((size_t)1 << 20)

/* A pool's waiting worker starts in about a microsecond: far smaller products pay for it. */
#define PBS2P_MIN_WORK_PER_POOL_THREAD ((size_t)1 << 15)

static size_t min_work(int pooled) {
    const char *env = getenv("PBS2P_MIN_WORK_PER_THREAD");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && v > 0) return (size_t)v;
    }
    return pooled ? PBS2P_MIN_WORK_PER_POOL_THREAD : PBS2P_MIN_WORK_PER_THREAD;
}

size_t pbs2p_min_work_per_thread(void) { return min_work(0); }

size_t pbs2p_min_work_per_pool_thread(void) { return min_work(1); }

/* Rows [row0, row1) of a product: on float activations xs by fn, or, where q8 is set, on int8 activations A. */
typedef struct job {
    pbs2p_rows_fn fn;
    pbs2p_rows_q8_fn q8;
    const pbs2p_layer *L;
    const float *xs;
    const pbs2p_q8_acts *A;
    size_t n_tokens;
    float *Y;
    int32_t row0, row1;
} job;

static void *run_job(void *arg) {
    const job *j = arg;
    if (j->q8) j->q8(j->L, j->A, j->n_tokens, j->Y, (size_t)j->L->rows, j->row0, j->row1);
    else j->fn(j->L, j->xs, j->n_tokens, j->Y, (size_t)j->L->rows, j->row0, j->row1);
    return NULL;
}

static void run_pool_job(void *arg) { run_job(arg); }

/* Column j of the prepared order (internal.h) of one token's x. */
static inline float column(const pbs2p_layer *L, const float *x, size_t j) {
    return L->perm ? x[L->perm[j]] : x[j];
}

/* xs (T, n_xs, K + PAD): x, or x * col_scale[r] per stored region r, in the prepared column order, zero padded. */
static float *prepare_activations(const pbs2p_layer *L, const float *X, size_t T) {
    const size_t K = (size_t)L->cols, stride = K + PBS2P_XS_PAD, nxs = (size_t)L->n_xs;
    float *xs = malloc(T * nxs * stride * sizeof *xs);
    if (!xs) return NULL;
    for (size_t t = 0; t < T; t++)
        for (size_t r = 0; r < nxs; r++) {
            float *dst = xs + (t * nxs + r) * stride;
            const float *x = X + t * K;
            if (L->col_scale) {
                const float *cs = L->col_scale + r * K;
                for (size_t j = 0; j < K; j++) dst[j] = column(L, x, j) * cs[j];
            } else if (L->perm) {
                for (size_t j = 0; j < K; j++) dst[j] = column(L, x, j);
            } else {
                memcpy(dst, x, K * sizeof *dst);
            }
            memset(dst + K, 0, PBS2P_XS_PAD * sizeof *dst);
        }
    return xs;
}

static pbs2p_status check_args(const pbs2p_layer *L, const float *X, size_t n_tokens, size_t x_len,
                               const float *Y, size_t y_len) {
    if (!L) return pbs2p_fail(PBS2P_ERR_NULL, "layer is NULL");
    if (!X || !Y) return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", X ? "output" : "input");
    const size_t R = (size_t)L->rows, K = (size_t)L->cols;
    if (n_tokens < 1) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_tokens must be >= 1");
    if (x_len != n_tokens * K)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "input holds %zu floats, expected %zu tokens x %zu cols", x_len, n_tokens, K);
    if (y_len != n_tokens * R)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "output holds %zu floats, expected %zu tokens x %zu rows", y_len, n_tokens, R);
    return PBS2P_OK;
}

/* Jobs of nt threads on whole row blocks of the prepared layout (no block is read by two threads): nt is an upper
 * bound, small products run on fewer threads; the split depends only on the thread count, never on timing. */
static int split_rows(const pbs2p_layer *L, pbs2p_rows_fn fn, const float *xs, size_t n_tokens, float *Y, int n_threads,
                      size_t min_work, job *jobs) {
    const size_t R = (size_t)L->rows, K = (size_t)L->cols;
    size_t useful = R * K * n_tokens / min_work;
    int nt = n_threads < (int)R ? n_threads : (int)R;
    if ((size_t)nt > useful) nt = useful > 0 ? (int)useful : 1;
    const size_t blocks = (R + PBS2P_ROW_BLOCK - 1) / PBS2P_ROW_BLOCK;
    for (int b = 0; b < nt; b++) {
        size_t lo = blocks * (size_t)b / (size_t)nt * PBS2P_ROW_BLOCK, hi = blocks * (size_t)(b + 1) / (size_t)nt * PBS2P_ROW_BLOCK;
        jobs[b] = (job){fn, NULL, L, xs, NULL, n_tokens, Y, (int32_t)(lo < R ? lo : R), (int32_t)(hi < R ? hi : R)};
    }
    return nt;
}

static pbs2p_status run(const pbs2p_layer *L, const float *X, size_t n_tokens, size_t x_len,
                        float *Y, size_t y_len, int n_threads, int batched) {
    pbs2p_status st = check_args(L, X, n_tokens, x_len, Y, y_len);
    if (st != PBS2P_OK) return st;
    if (n_threads < 1 || n_threads > PBS2P_MAX_THREADS)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_threads %d must be in 1..%d", n_threads, PBS2P_MAX_THREADS);
    if (L->kept_signs) /* only a model prepares them, and multiplies them by pbs2p_gemm_pool(_q8) */
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "a layer holding kept-order signs is multiplied on int8 activations only");
    pbs2p_kernels kernels;
    if (!pbs2p_kernel_current(&kernels)) return PBS2P_ERR_NO_KERNEL; /* message already set */
    float *xs = prepare_activations(L, X, n_tokens);
    if (!xs) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %zu activation vectors", n_tokens);
    job jobs[PBS2P_MAX_THREADS];
    const int nt = split_rows(L, batched ? kernels.gemm : kernels.gemv, xs, n_tokens, Y, n_threads,
                              min_work(0), jobs);
    pthread_t tid[PBS2P_MAX_THREADS];
    int started = 1;
    for (; started < nt; started++)
        if (pthread_create(&tid[started], NULL, run_job, &jobs[started]) != 0) {
            st = pbs2p_fail(PBS2P_ERR_THREAD, "could not start worker thread %d of %d", started, nt);
            break;
        }
    run_job(&jobs[0]);
    for (int b = 1; b < started; b++) pthread_join(tid[b], NULL);
    free(xs);
    return st;
}

pbs2p_status pbs2p_gemm(const pbs2p_layer *L, const float *X, size_t n_tokens, size_t x_len,
                        float *Y, size_t y_len, int n_threads) {
    return run(L, X, n_tokens, x_len, Y, y_len, n_threads, 1);
}

pbs2p_status pbs2p_gemv(const pbs2p_layer *L, const float *x, size_t x_len, float *y, size_t y_len, int n_threads) {
    return run(L, x, 1, x_len, y, y_len, n_threads, 0);
}

/* ---- on int8 activations (internal.h): a model's products ---- */

/* The activation blocks of X (T, K) for the layer's planes, quantized into A: block (r, g, w) of a token is columns
 * g gs + 32 w .. + 31 of its row of X in the prepared column order (times col_scale[r]), zero past its group's end. A layer without column scales
 * whose groups are whole blocks (both presets) has X's own layout: X is quantized where it is, without a copy. */
static pbs2p_status quantize_blocks(const pbs2p_layer *L, const float *X, size_t T, pbs2p_q8_acts *A) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, W = (size_t)L->words, gs = (size_t)L->group_size;
    const size_t per_token = pbs2p_bin_acts_blocks(L) * PBS2P_ACT_BLOCK;
    if (pbs2p_q8_plain_blocks(L)) {
        pbs2p_q8_acts_quantize(X, 0, T, A);
        return PBS2P_OK;
    }
    float *v = calloc(T * per_token, sizeof *v);
    if (!v) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the activation blocks of %zu tokens", T);
    for (size_t t = 0; t < T; t++)
        for (size_t r = 0; r < (size_t)L->n_xs; r++)
            for (size_t g = 0; g < G; g++) {
                const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
                const float *x = X + t * K;
                float *dst = v + t * per_token + (r * G + g) * W * PBS2P_ACT_BLOCK; /* the group's W blocks */
                if (L->col_scale) {
                    const float *cs = L->col_scale + r * K + c0;
                    for (size_t j = 0; j < len; j++) dst[j] = column(L, x, c0 + j) * cs[j];
                } else {
                    for (size_t j = 0; j < len; j++) dst[j] = column(L, x, c0 + j);
                }
            }
    pbs2p_q8_acts_quantize(v, 0, T, A);
    free(v);
    return PBS2P_OK;
}

/* The products of A's tokens on the pool's threads, rows split as split_rows splits them. */
static void run_q8_jobs(const pbs2p_layer *L, pbs2p_rows_q8_fn fn, const pbs2p_q8_acts *A, size_t T, float *Y,
                        pbs2p_pool *pool) {
    job jobs[PBS2P_MAX_THREADS];
    const int nt = split_rows(L, NULL, NULL, T, Y, pbs2p_pool_threads(pool), min_work(1), jobs);
    for (int b = 0; b < nt; b++) {
        jobs[b].q8 = fn;
        jobs[b].A = A;
    }
    pbs2p_pool_run(pool, run_pool_job, jobs, sizeof jobs[0], nt);
}

static pbs2p_status run_q8(const pbs2p_layer *L, pbs2p_rows_q8_fn fn, const float *X, size_t T, float *Y,
                           pbs2p_pool *pool) {
    const int32_t cols = (int32_t)(pbs2p_bin_acts_blocks(L) * PBS2P_ACT_BLOCK);
    void *mem = malloc(pbs2p_q8_acts_bytes(T, cols));
    if (!mem) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the activation blocks of %zu tokens", T);
    pbs2p_q8_acts A;
    pbs2p_q8_acts_init(mem, T, cols, &A);
    pbs2p_status st = quantize_blocks(L, X, T, &A);
    if (st == PBS2P_OK) run_q8_jobs(L, fn, &A, T, Y, pool);
    free(mem);
    return st;
}

int pbs2p_q8_plain_blocks(const pbs2p_layer *L) {
    return !L->col_scale && !L->perm && pbs2p_bin_acts_blocks(L) * PBS2P_ACT_BLOCK == (size_t)L->cols;
}

/* The variant's int8 products for L: a layer prepared with kept-order signs under a kernel that reads them, multiplied
 * after another kernel was chosen (pbs2p_kernel_select), runs the reference, which reads every layout. */
static pbs2p_rows_q8_fn q8_for(const pbs2p_layer *L, const pbs2p_kernels *k) {
    return L->kept_signs && !k->q8_kept_signs ? pbs2p_rows_q8_ref : k->q8;
}

pbs2p_status pbs2p_gemm_pool_q8(const pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y,
                                pbs2p_pool *pool) {
    pbs2p_kernels kernels;
    if (!pbs2p_kernel_current(&kernels)) return PBS2P_ERR_NO_KERNEL; /* message already set */
    run_q8_jobs(L, q8_for(L, &kernels), A, n_tokens, Y, pool);
    return PBS2P_OK;
}

pbs2p_status pbs2p_gemm_pool(const pbs2p_layer *L, const float *X, size_t n_tokens, size_t x_len,
                             float *Y, size_t y_len, pbs2p_pool *pool) {
    pbs2p_status st = check_args(L, X, n_tokens, x_len, Y, y_len);
    if (st != PBS2P_OK) return st;
    pbs2p_kernels kernels;
    if (!pbs2p_kernel_current(&kernels)) return PBS2P_ERR_NO_KERNEL; /* message already set */
    return run_q8(L, q8_for(L, &kernels), X, n_tokens, Y, pool);
}
