/* test_sampler.c — ctest `sampler`: the sampler's documented semantics (greedy ties, top-k, top-p, temperature,
 * seeded draws whose frequencies match the softmax), its parameter checks, and the NULL-argument checks of
 * pbs2p_generate and pbs2p_model_perplexity (which need no model file). */
#include "pbs2p.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, " [%s]\n", pbs2p_last_error()); } } while (0)
#define CHECK_ST(st, want, what) do { pbs2p_status s_ = (st); CHECK(s_ == (want), "%s: status %d, want %d", (what), \
    (int)s_, (int)(want)); } while (0)

/* Chi-square bound for the frequency tests: the 0.9999 quantile of chi2 with 7 degrees of freedom is 29.88, so a
 * correct sampler exceeds 30 on an unlucky seed with probability < 1e-4; the seeds are fixed, so it never flakes. */
#define CHI2_BOUND_DF7 30.0
#define N_DRAWS 200000
#define N_DRAWS_LARGE 10000 /* draws over the 1000-token vocabulary */

static pbs2p_sampler *make(float temperature, int32_t top_k, float top_p, uint64_t seed, int32_t n_vocab) {
    pbs2p_sampler_params p = {temperature, top_k, top_p, seed};
    pbs2p_sampler *s = NULL;
    pbs2p_status st = pbs2p_sampler_new(&p, n_vocab, &s);
    CHECK(st == PBS2P_OK && s, "sampler_new(T=%g, k=%d, p=%g) failed", (double)temperature, (int)top_k, (double)top_p);
    return s;
}

static int32_t draw(pbs2p_sampler *s, const float *logits, size_t n) {
    int32_t t = -1;
    CHECK_ST(pbs2p_sampler_sample(s, logits, n, &t), PBS2P_OK, "sample");
    return t;
}

/* Deterministic pseudo-random logits in [-4, 4) quantized to 1/8, so equal maxima (ties) occur. */
static void fill_logits(float *x, size_t n, unsigned *state) {
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        x[i] = (float)((int)(*state >> 26) - 32) / 8.0f;
    }
}

static int32_t argmax_lowest(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

static void test_defaults(void) {
    pbs2p_sampler_params p = pbs2p_sampler_default_params();
    CHECK(p.temperature == 0.0f && p.top_k == 0 && p.top_p == 1.0f && p.seed == 0, "sampler defaults");
    pbs2p_generate_params g = pbs2p_generate_default_params();
    CHECK(g.n_predict == 64 && g.stop_at_eos == 1 && g.sampler.temperature == 0.0f && g.sampler.top_k == 0 &&
          g.sampler.top_p == 1.0f, "generate defaults");
}

static void test_greedy(void) {
    const float ties[] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f};
    pbs2p_sampler *s = make(0.0f, 0, 1.0f, 7, 5);
    CHECK(draw(s, ties, 5) == 1, "greedy picks the lowest id among equal maxima");
    pbs2p_sampler_free(s);
    s = make(-1.0f, 5, 0.5f, 7, 5); /* temperature < 0 is greedy whatever top-k / top-p say */
    CHECK(draw(s, ties, 5) == 1, "negative temperature is greedy");
    pbs2p_sampler_free(s);
    const float all_ninf[] = {-INFINITY, -INFINITY, -INFINITY};
    s = NULL;
    CHECK_ST(pbs2p_sampler_new(NULL, 3, &s), PBS2P_OK, "params NULL: defaults (greedy)");
    CHECK(draw(s, all_ninf, 3) == 0, "greedy over all -inf gives id 0");
    const float pinf[] = {0.0f, INFINITY, 5.0f};
    CHECK(draw(s, pinf, 3) == 1, "greedy picks +inf");
    pbs2p_sampler_free(s);
}

/* top_k = 1 and a tiny top_p keep only the arg-max (lowest id on ties) at any temperature. */
static void test_degenerate_filters_are_greedy(void) {
    enum { V = 37 };
    float x[V];
    unsigned state = 12345;
    const float temps[] = {0.05f, 1.0f, 10.0f, 1e6f};
    for (int t = 0; t < 4; t++) {
        pbs2p_sampler *k1 = make(temps[t], 1, 1.0f, 1000u + (uint64_t)t, V);
        pbs2p_sampler *ptiny = make(temps[t], 0, 1e-7f, 2000u + (uint64_t)t, V);
        pbs2p_sampler *both = make(temps[t], 3, 1e-7f, 3000u + (uint64_t)t, V);
        for (int row = 0; row < 200; row++) {
            fill_logits(x, V, &state);
            const int32_t want = argmax_lowest(x, V);
            CHECK(draw(k1, x, V) == want, "top_k 1 at T=%g row %d", (double)temps[t], row);
            CHECK(draw(ptiny, x, V) == want, "top_p 1e-7 at T=%g row %d", (double)temps[t], row);
            CHECK(draw(both, x, V) == want, "top_k 3 + top_p 1e-7 at T=%g row %d", (double)temps[t], row);
        }
        pbs2p_sampler_free(k1);
        pbs2p_sampler_free(ptiny);
        pbs2p_sampler_free(both);
    }
}

static void test_seeded_reproducible(void) {
    enum { V = 16, N = 300 };
    float x[V];
    for (int i = 0; i < V; i++) x[i] = 0.1f * (float)(i % 5);
    int32_t a[N], b[N], c[N];
    pbs2p_sampler *sa = make(1.0f, 0, 1.0f, 42, V), *sb = make(1.0f, 0, 1.0f, 42, V), *sc = make(1.0f, 0, 1.0f, 43, V);
    for (int i = 0; i < N; i++) {
        a[i] = draw(sa, x, V);
        b[i] = draw(sb, x, V);
        c[i] = draw(sc, x, V);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same draws");
    int differ = 0, distinct = 0, seen[V] = {0};
    for (int i = 0; i < N; i++) {
        differ += a[i] != c[i];
        if (a[i] >= 0 && a[i] < V && !seen[a[i]]++) distinct++;
    }
    CHECK(differ > N / 2, "seeds 42 and 43 agree on %d of %d draws", N - differ, N);
    CHECK(distinct == V, "300 draws over 16 near-uniform tokens hit %d of them", distinct);
    pbs2p_sampler_free(sa);
    pbs2p_sampler_free(sb);
    pbs2p_sampler_free(sc);
}

/* Draw N_DRAWS tokens and compare the counts with `expect` (probabilities summing to 1): every token with
 * probability 0 must never come, and the chi-square over the others must stay below `bound`. */
static void check_frequencies(pbs2p_sampler *s, const float *x, size_t V, const double *expect, double bound,
                              const char *what) {
    long counts[64] = {0};
    for (int i = 0; i < N_DRAWS; i++) {
        int32_t t = draw(s, x, V);
        if (t >= 0 && (size_t)t < V) counts[t]++;
    }
    double chi2 = 0.0;
    for (size_t i = 0; i < V; i++) {
        if (expect[i] == 0.0) {
            CHECK(counts[i] == 0, "%s: token %zu has probability 0 but came %ld times", what, i, counts[i]);
            continue;
        }
        const double e = expect[i] * N_DRAWS;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    CHECK(chi2 < bound, "%s: chi-square %.2f >= %.2f", what, chi2, bound);
}

static void softmax_ref(const float *x, size_t V, double T, const int *keep, double *p) {
    double max = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < V; i++)
        if (keep[i] && x[i] > max) max = x[i];
    for (size_t i = 0; i < V; i++) sum += p[i] = keep[i] ? exp(((double)x[i] - max) / T) : 0.0;
    for (size_t i = 0; i < V; i++) p[i] /= sum;
}

static void test_frequencies(void) {
    enum { V = 8 };
    const float x[V] = {0.0f, 0.5f, 1.0f, -1.0f, 2.0f, 0.3f, -0.5f, 1.5f};
    int keep[V];
    double p[V];

    /* full softmax(x / T), 8 tokens: df 7 */
    for (int i = 0; i < V; i++) keep[i] = 1;
    const double temps[] = {0.7, 1.0, 2.5};
    for (int t = 0; t < 3; t++) {
        softmax_ref(x, V, temps[t], keep, p);
        pbs2p_sampler *s = make((float)temps[t], 0, 1.0f, 99u + (uint64_t)t, V);
        char what[64];
        snprintf(what, sizeof what, "softmax at T=%g", temps[t]);
        check_frequencies(s, x, V, p, CHI2_BOUND_DF7, what);
        pbs2p_sampler_free(s);
    }

    /* top_k 3: ids 4 (2.0), 7 (1.5), 2 (1.0), renormalized; df 2, 0.9999 quantile 18.4 */
    for (int i = 0; i < V; i++) keep[i] = i == 4 || i == 7 || i == 2;
    softmax_ref(x, V, 1.3, keep, p);
    pbs2p_sampler *s = make(1.3f, 3, 1.0f, 5, V);
    check_frequencies(s, x, V, p, 18.5, "top_k 3");
    pbs2p_sampler_free(s);

    /* top_p 0.7 at T=1: probabilities sorted 4 (.378), 7 (.229), 2 (.139), 1, 5, 0, 6, 3: the shortest prefix
     * reaching 0.7 has 3 tokens */
    for (int i = 0; i < V; i++) keep[i] = 1;
    softmax_ref(x, V, 1.0, keep, p);
    const int order[V] = {4, 7, 2, 1, 5, 0, 6, 3};
    double cum = 0.0;
    int n_keep = 0;
    for (int i = 0; i < V; i++) keep[i] = 0;
    while (n_keep < V && cum < 0.7) {
        cum += p[order[n_keep]];
        keep[order[n_keep++]] = 1;
    }
    CHECK(n_keep == 3, "the top_p 0.7 reference keeps %d tokens, expected 3 (4, 7, 2)", n_keep);
    softmax_ref(x, V, 1.0, keep, p);
    s = make(1.0f, 0, 0.7f, 11, V);
    check_frequencies(s, x, V, p, 18.5, "top_p 0.7");
    pbs2p_sampler_free(s);

    /* -inf logits are never drawn; +inf logits share the whole mass evenly (df 1, 0.9999 quantile 15.1) */
    const float inf_x[V] = {0.0f, INFINITY, 1.0f, -INFINITY, INFINITY, 2.0f, -INFINITY, 3.0f};
    double half[V] = {0, 0.5, 0, 0, 0.5, 0, 0, 0};
    s = make(1.0f, 0, 1.0f, 3, V);
    check_frequencies(s, inf_x, V, half, 15.2, "+inf logits");
    pbs2p_sampler_free(s);
    const float ninf_x[V] = {0.0f, -INFINITY, 0.0f, -INFINITY, 0.0f, -INFINITY, 0.0f, -INFINITY};
    double quarter[V] = {0.25, 0, 0.25, 0, 0.25, 0, 0.25, 0};
    s = make(0.9f, 0, 1.0f, 4, V);
    check_frequencies(s, ninf_x, V, quarter, 21.2, "-inf logits"); /* df 3: 0.9999 quantile 21.1 */
    pbs2p_sampler_free(s);
}

/* A vocabulary of 1000 whose top-p prefix needs more than the first candidates the sampler sorts: token i has rank
 * r(i) = 37 i mod 1000 and logit -r/100, so at T = 1 the prefix reaching 0.9 holds the 231 best ranks (0.99999:
 * 981). Every draw must lie in the reference prefix (computed here by rank), some must come from its last
 * quarter, and the counts of 8 consecutive rank groups follow the renormalized probabilities (df 7). */
static void test_top_p_large_vocab(void) {
    enum { V = 1000 };
    static float x[V];
    static double p_rank[V];
    static long counts[V];
    for (int i = 0; i < V; i++) x[i] = -(float)((37 * i) % V) / 100.0f;
    const float top_ps[] = {0.9f, 0.99999f};
    const int want_kept[] = {231, 981}; /* more than the 64 and the 512 candidates sorted first */
    for (int t = 0; t < 2; t++) {
        double sum = 0.0, cum = 0.0;
        for (int r = 0; r < V; r++) sum += p_rank[r] = exp(-(double)(float)(r / 100.0f));
        int kept = 0;
        while (kept < V && cum < (double)top_ps[t] * sum) cum += p_rank[kept++];
        CHECK(kept == want_kept[t], "reference top_p %g keeps %d ranks, expected %d", (double)top_ps[t], kept,
              want_kept[t]);
        memset(counts, 0, sizeof counts);
        pbs2p_sampler *s = make(1.0f, 0, top_ps[t], 17u + (uint64_t)t, V);
        for (int i = 0; i < N_DRAWS_LARGE; i++) {
            int32_t id = draw(s, x, V);
            if (id >= 0 && id < V) counts[(37 * id) % V]++;
        }
        pbs2p_sampler_free(s);
        long outside = 0;
        for (int r = kept; r < V; r++) outside += counts[r];
        CHECK(outside == 0, "top_p %g: %ld draws outside the %d-token prefix", (double)top_ps[t], outside, kept);
        long tail = 0;
        for (int r = kept - kept / 4; r < kept; r++) tail += counts[r];
        CHECK(tail > 0, "top_p %g: no draw from the last quarter of the prefix", (double)top_ps[t]);
        double chi2 = 0.0;
        for (int g = 0; g < 8; g++) {
            double pg = 0.0;
            long cg = 0;
            for (int r = g * kept / 8; r < (g + 1) * kept / 8; r++) pg += p_rank[r] / cum, cg += counts[r];
            chi2 += (cg - pg * N_DRAWS_LARGE) * (cg - pg * N_DRAWS_LARGE) / (pg * N_DRAWS_LARGE);
        }
        CHECK(chi2 < CHI2_BOUND_DF7, "top_p %g: rank-group chi-square %.2f", (double)top_ps[t], chi2);
    }
}

static void test_validation(void) {
    pbs2p_sampler *s = (pbs2p_sampler *)&failures;
    const struct { pbs2p_sampler_params p; int32_t V; const char *what; } bad[] = {
        {{NAN, 0, 1.0f, 0}, 8, "temperature NaN"},
        {{INFINITY, 0, 1.0f, 0}, 8, "temperature +inf"},
        {{1.0f, -1, 1.0f, 0}, 8, "top_k -1"},
        {{1.0f, 0, 0.0f, 0}, 8, "top_p 0"},
        {{1.0f, 0, -0.5f, 0}, 8, "top_p -0.5"},
        {{1.0f, 0, 1.0001f, 0}, 8, "top_p > 1"},
        {{1.0f, 0, NAN, 0}, 8, "top_p NaN"},
        {{1.0f, 0, 1.0f, 0}, 0, "n_vocab 0"},
        {{1.0f, 0, 1.0f, 0}, -3, "n_vocab -3"},
        {{0.0f, 0, 2.0f, 0}, 8, "top_p 2 even when greedy"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = (pbs2p_sampler *)&failures;
        CHECK_ST(pbs2p_sampler_new(&bad[i].p, bad[i].V, &s), PBS2P_ERR_ARGUMENT, bad[i].what);
        CHECK(s == NULL, "%s: *out not NULL after a failure", bad[i].what);
        CHECK(strlen(pbs2p_last_error()) > 0, "%s: no message", bad[i].what);
    }
    CHECK_ST(pbs2p_sampler_new(NULL, 8, NULL), PBS2P_ERR_NULL, "out NULL");

    pbs2p_sampler_params big_k = {1.0f, 1000, 1.0f, 0}, ninf_t = {-INFINITY, 0, 1.0f, 0};
    CHECK_ST(pbs2p_sampler_new(&big_k, 4, &s), PBS2P_OK, "top_k above n_vocab is clipped");
    pbs2p_sampler_free(s);
    CHECK_ST(pbs2p_sampler_new(&ninf_t, 4, &s), PBS2P_OK, "temperature -inf is greedy");
    pbs2p_sampler_free(s);

    s = make(1.0f, 0, 1.0f, 0, 4);
    float x[4] = {0.0f, 1.0f, 2.0f, 3.0f};
    int32_t t = -7;
    CHECK_ST(pbs2p_sampler_sample(s, x, 3, &t), PBS2P_ERR_ARGUMENT, "n != n_vocab");
    x[2] = NAN;
    CHECK_ST(pbs2p_sampler_sample(s, x, 4, &t), PBS2P_ERR_ARGUMENT, "NaN logit");
    CHECK(t == -7, "token written after a failure");
    CHECK_ST(pbs2p_sampler_sample(NULL, x, 4, &t), PBS2P_ERR_NULL, "sampler NULL");
    CHECK_ST(pbs2p_sampler_sample(s, NULL, 4, &t), PBS2P_ERR_NULL, "logits NULL");
    CHECK_ST(pbs2p_sampler_sample(s, x, 4, NULL), PBS2P_ERR_NULL, "token NULL");
    pbs2p_sampler_free(s);
    pbs2p_sampler_free(NULL);
}

static void test_generate_perplexity_args(void) {
    const int32_t prompt[2] = {1, 2};
    int32_t out[4];
    pbs2p_generate_stats stats;
    memset(&stats, 0xAB, sizeof stats);
    CHECK_ST(pbs2p_generate(NULL, prompt, 2, NULL, NULL, NULL, out, 4, &stats), PBS2P_ERR_NULL, "generate model NULL");
    CHECK(stats.n_generated == 0 && stats.n_prompt == 0 && stats.decode_seconds == 0.0, "stats zeroed on failure");
    CHECK_ST(pbs2p_generate(NULL, NULL, 2, NULL, NULL, NULL, NULL, 0, NULL), PBS2P_ERR_NULL, "generate all NULL");
    pbs2p_perplexity_result r;
    CHECK_ST(pbs2p_model_perplexity(NULL, prompt, 2, 2, 0, &r), PBS2P_ERR_NULL, "perplexity model NULL");
    CHECK_ST(pbs2p_model_perplexity(NULL, NULL, 2, 2, 0, NULL), PBS2P_ERR_NULL, "perplexity all NULL");
}

int main(void) {
    test_defaults();
    test_greedy();
    test_degenerate_filters_are_greedy();
    test_seeded_reproducible();
    test_frequencies();
    test_top_p_large_vocab();
    test_validation();
    test_generate_perplexity_args();
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("test_sampler: ok\n");
    return failures ? 1 : 0;
}
