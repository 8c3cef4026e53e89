/* bench_linears.c — times a model's linears as the model multiplies them (bench/kernel_speed.py runs it).
 *
 *   pbs2p-bench-linears MODEL.gguf [--threads N] [--tokens T] [--kernel NAME] [--seconds S] [--min-passes P]
 *   pbs2p-bench-linears --read-stream GIB [--threads N]
 *
 * Loads MODEL with pbs2p_model_load (each packed layer prepared as a model prepares it for this kernel variant: kept
 * signs where the variant reads them; each grid-tier linear in place in the mapping), then runs passes over every
 * decoder linear in model order, block by block, each through the model's own product (matmul: the int8 activations
 * quantized, then the packed or integer dense kernel on the model's thread pool) on T random tokens, and clocks each
 * product. A pass reads all the linears' bytes once, so where they are larger than the caches every product reads
 * its weights from memory, as a decode step does. Prints one JSON object: per linear kind (q, k, v, o, gate, up,
 * down) its shape, the layout of block 0's, count, bytes and the median over passes of its summed seconds; and the
 * whole pass's. --read-stream: the read bandwidth this machine gives such a pass, N threads of the same pool each
 * summing its share of a GIB buffer (8 independent 64-bit sums, which the compiler vectorizes; bound by the memory),
 * (see read_share), the median of 7 rounds: a read-only yardstick beside the copy bandwidth, which also counts the
 * bytes written. */
#define _POSIX_C_SOURCE 200112L
#include "model_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const KIND_NAMES[N_LIN] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                              "ffn_down"};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "4:8 kept signs, 1 region, group 4096", "6:8 planes, salient, 3 regions, group 128", or the grid tier's name. */
static void layout_name(const linear *l, char *buf, size_t cap) {
    if (!l->layer) {
        const char *tier = pbs2p_dense_tier_name(l->dense.type);
        snprintf(buf, cap, "%s", tier ? tier : "?");
        return;
    }
    const pbs2p_layer *L = l->layer;
    snprintf(buf, cap, "%d:%d %s%s, %d region%s, group %d", L->n, L->m, L->kept_signs ? "kept signs" : "planes",
             L->has_salient ? ", salient" : "", L->regions, L->regions > 1 ? "s" : "", L->group_size);
}

typedef struct read_job {
    const uint64_t *data;
    size_t words;
    uint64_t sum;
} read_job;

/* A thread's share as READ_STREAMS interleaved sequential streams, as a pass reads its planes: one stream alone
 * leaves this VM's hardware prefetchers a third of the bandwidth short (8.4 against 12-13 GB/s, one thread). */
#define READ_STREAMS 4

static void read_share(void *arg) {
    read_job *j = arg;
    const size_t q = j->words / READ_STREAMS / 8 * 8;
    uint64_t acc[8] = {0};
    for (size_t i = 0; i < q; i += 8)
        for (int s = 0; s < READ_STREAMS; s++)
            for (int k = 0; k < 8; k++) acc[k] += j->data[(size_t)s * q + i + k];
    for (int k = 0; k < 8; k++) j->sum += acc[k];
}

/* GB/s of reading `gib` GiB on `threads` threads of a pool (see the top). */
static int read_stream(double gib, int threads) {
    const size_t unit = 8 * READ_STREAMS;
    const size_t words = (size_t)(gib * (double)(1u << 30)) / 8 / (size_t)threads / unit * unit;
    uint64_t *data = malloc(words * (size_t)threads * sizeof *data);
    read_job jobs[PBS2P_MODEL_MAX_THREADS];
    pbs2p_pool *pool = NULL;
    if (!data || (threads > 1 && pbs2p_pool_new(threads, &pool) != PBS2P_OK)) {
        fprintf(stderr, "pbs2p-bench-linears: out of memory\n");
        free(data);
        return 1;
    }
    for (size_t i = 0; i < words * (size_t)threads; i++) data[i] = i; /* every page touched before timing */
    double t[7];
    uint64_t check = 0;
    for (int r = 0; r < 7; r++) {
        for (int k = 0; k < threads; k++) jobs[k] = (read_job){data + (size_t)k * words, words, 0};
        const double t0 = now();
        pbs2p_pool_run(pool, read_share, jobs, sizeof jobs[0], threads);
        t[r] = now() - t0;
        for (int k = 0; k < threads; k++) check += jobs[k].sum;
    }
    printf("{\"threads\": %d, \"bytes\": %zu, \"read_gbs\": %.4f, \"check\": %llu}\n", threads,
           words * (size_t)threads * 8, (double)(words * (size_t)threads * 8) / median(t, 7) / 1e9,
           (unsigned long long)check);
    pbs2p_pool_free(pool);
    free(data);
    return 0;
}

static int usage(const char *msg) {
    fprintf(stderr, "pbs2p-bench-linears: %s\nusage: pbs2p-bench-linears MODEL.gguf [--threads N] [--tokens T] "
            "[--kernel NAME] [--seconds S] [--min-passes P]\n       pbs2p-bench-linears --read-stream GIB "
            "[--threads N]\n", msg);
    return 2;
}

int main(int argc, char **argv) {
    const char *path = NULL, *kernel = NULL;
    int threads = 1, tokens = 1, min_passes = 5;
    double seconds = 2.0, stream_gib = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') { path = a; continue; }
        if (i + 1 >= argc) return usage("an option lacks its value");
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--threads")) threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--tokens")) tokens = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--min-passes")) min_passes = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--seconds")) seconds = strtod(v, &end);
        else if (!strcmp(a, "--read-stream")) stream_gib = strtod(v, &end);
        else if (!strcmp(a, "--kernel")) { kernel = v; continue; }
        else return usage("unknown option");
        if (*end) return usage("a number is malformed");
    }
    if (stream_gib != 0.0) {
        if (!(stream_gib > 0.0 && stream_gib <= 64.0) || threads < 1 || threads > PBS2P_MODEL_MAX_THREADS)
            return usage("--read-stream takes 0 < GIB <= 64, --threads 1..PBS2P_MODEL_MAX_THREADS");
        return read_stream(stream_gib, threads);
    }
    if (!path) return usage("no model file");
    if (threads < 1 || threads > PBS2P_MODEL_MAX_THREADS || tokens < 1 || tokens > 4096 || min_passes < 1 ||
        min_passes > 1000 || !(seconds >= 0))
        return usage("threads, tokens, seconds or min-passes out of range");
    if (kernel && pbs2p_kernel_select(kernel) != PBS2P_OK) {
        fprintf(stderr, "pbs2p-bench-linears: %s\n", pbs2p_last_error());
        return 2;
    }
    pbs2p_model_params params = {threads, 1, PBS2P_KV_F16};
    pbs2p_model *m;
    if (pbs2p_model_load(path, &params, &m) != PBS2P_OK) {
        fprintf(stderr, "pbs2p-bench-linears: %s: %s\n", path, pbs2p_last_error());
        return 1;
    }
    const config *c = &m->c;
    int32_t width = 0;
    linear *first[N_LIN] = {0};
    for (int k = 0; k < N_LIN; k++) {
        linear *l = &m->w.blocks[0].lin[k];
        if (!l->layer && !l->dense.data) continue; /* no gate */
        first[k] = l;
        width = l->cols > width ? l->cols : width;
        width = l->rows > width ? l->rows : width;
    }
    const size_t values = (size_t)tokens * (size_t)width;
    float *X = malloc(values * sizeof *X), *Y = malloc(values * sizeof *Y);
    const size_t cap = 1000;
    double *kind_s = calloc((size_t)N_LIN * cap, sizeof *kind_s), *pass_s = calloc(cap, sizeof *pass_s);
    if (!X || !Y || !kind_s || !pass_s) {
        fprintf(stderr, "pbs2p-bench-linears: out of memory\n");
        return 1;
    }
    uint64_t s = 0x9E3779B97F4A7C15ull; /* activations ~ uniform(-1, 1): the products' time does not depend on them */
    for (size_t j = 0; j < values; j++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        X[j] = (float)((double)(s >> 11) * 0x1.0p-52 - 1.0);
    }
    size_t passes = 0;
    const double start = now();
    for (int warm = 1;; warm = 0) { /* a first pass pages everything in; then passes until the budget */
        double pass = 0.0;
        for (int32_t b = 0; b < c->n_layer; b++)
            for (int k = 0; k < N_LIN; k++) {
                if (!first[k]) continue;
                const linear *l = &m->w.blocks[b].lin[k];
                const double t0 = now();
                pbs2p_status st = matmul(l, X, tokens, Y, m->pool);
                const double dt = now() - t0;
                if (st != PBS2P_OK) {
                    fprintf(stderr, "pbs2p-bench-linears: blk.%d.%s: %s\n", (int)b, KIND_NAMES[k], pbs2p_last_error());
                    return 1;
                }
                if (!warm) kind_s[(size_t)k * cap + passes] += dt;
                pass += dt;
            }
        if (warm) continue;
        pass_s[passes++] = pass;
        if (passes == cap || (passes >= (size_t)min_passes && now() - start >= seconds)) break;
    }
    printf("{\"kernel\": \"%s\", \"threads\": %d, \"tokens\": %d, \"blocks\": %d, \"passes\": %zu, \"kinds\": [",
           pbs2p_kernel_name(), threads, tokens, (int)c->n_layer, passes);
    uint64_t all_bytes = 0;
    for (int k = 0, printed = 0; k < N_LIN; k++) {
        if (!first[k]) continue;
        uint64_t bytes = 0;
        for (int32_t b = 0; b < c->n_layer; b++) bytes += linear_bytes(&m->w.blocks[b].lin[k]);
        all_bytes += bytes;
        char layout[96];
        layout_name(first[k], layout, sizeof layout);
        printf("%s{\"kind\": \"%s\", \"rows\": %d, \"cols\": %d, \"layout\": \"%s\", \"count\": %d, "
               "\"bytes\": %" PRIu64 ", \"seconds\": %.9g}", printed++ ? ", " : "", KIND_NAMES[k],
               (int)first[k]->rows, (int)first[k]->cols, layout, (int)c->n_layer, bytes,
               median(kind_s + (size_t)k * cap, passes));
    }
    printf("], \"bytes\": %" PRIu64 ", \"seconds\": %.9g}\n", all_bytes, median(pass_s, passes));
    free(X); free(Y); free(kind_s); free(pass_s);
    pbs2p_model_free(m);
    return 0;
}
