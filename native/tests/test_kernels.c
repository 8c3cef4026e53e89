/* test_kernels.c — ctest: the C format reference and every compiled kernel variant against hand-built packed layers.
 *
 * A tiny C packer (below) encodes random logical layers (mask, signs, salient, split groups, scales) into
 * FORMAT.md streams. Checks: dequantize_ref == an independent dense evaluation bit for bit; every variant
 * (gemv and gemm) == the reference kernel within KERNEL_RTOL; the reference == a double dense product within
 * KERNEL_RTOL; results identical for any thread count; a gemm token's result does not depend on the rest of
 * the batch; invalid input gives status codes. */
#define _POSIX_C_SOURCE 200112L /* setenv */
#include "internal.h"
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* |y - y_ref| <= KERNEL_RTOL * sum_j |coefficients of W_ij| * |x_j|: float32 partial sums over <= 1024 columns. */
#define KERNEL_RTOL 1e-5

/* A float16 with random mantissa, exponent in [e_lo, e_hi] (unbiased), sign positive unless `signed_`. */
static uint16_t rnd_half(int e_lo, int e_hi, int signed_) {
    uint16_t e = (uint16_t)(e_lo + 15 + (int)(rnd() % (uint32_t)(e_hi - e_lo + 1)));
    uint16_t h = (uint16_t)((e << 10) | (rnd() & 0x3FF));
    if (signed_ && (rnd() & 1)) h |= 0x8000;
    return h;
}

/* ---- logical layer + test packer (FORMAT.md sections 1-5) ---- */
typedef struct logical {
    pbs2p_layer_desc d;
    uint8_t *kept, *s0, *s1, *group, *sal; /* (R,K) (R,K) (R,K) (R,K) (K,) */
    uint8_t *mask, *signs, *signs2, *salient, *groups;
    uint16_t *alpha, *alpha2, *mu, *col_scale;
} logical;

static void put_field(uint8_t *s, size_t k, int w, uint32_t v) {
    for (int b = 0; b < w; b++) {
        size_t bit = k * (size_t)w + (size_t)b;
        if ((v >> b) & 1u) s[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

static uint32_t code_of(uint32_t bitmap, int m) { /* rank among m-bit values of the same popcount */
    uint32_t c = 0;
    for (uint32_t b = 0; b < bitmap; b++) c += __builtin_popcount(b) == __builtin_popcount(bitmap);
    (void)m;
    return c;
}

static void make_layer(logical *L, int R, int K, int n, int m, int gs, int S, int salient, int has_mu, int has_cs) {
    memset(L, 0, sizeof *L);
    pbs2p_layer_desc *d = &L->d;
    d->format_version = PBS2P_FORMAT_VERSION; d->rows = R; d->cols = K; d->n = n; d->m = m;
    d->group_size = gs; d->split = S; d->has_mu = has_mu; d->has_col_scale = has_cs;
    size_t RK = (size_t)R * K;
    L->kept = calloc(RK, 1); L->s0 = calloc(RK, 1); L->s1 = calloc(RK, 1); L->group = calloc(RK, 1);
    L->sal = calloc((size_t)K, 1);
    int nsal = 0;
    if (salient) {
        for (int j = 0; j < K; j++) { L->sal[j] = rnd() % 8 == 0; nsal += L->sal[j]; }
        if (!nsal) { L->sal[K - 1] = 1; nsal = 1; }
    }
    d->has_salient = nsal > 0; d->n_salient = nsal;
    pbs2p_layer_sizes sz;
    if (pbs2p_layer_sizes_of(d, &sz) != PBS2P_OK) { fprintf(stderr, "bad test layer: %s\n", pbs2p_last_error()); exit(2); }
    int w_mask = pbs2p_mask_code_bits(n, m), w_group = 0;
    while ((1 << w_group) < S) w_group++;
    L->mask = calloc(R * sz.mask_row_bytes + 1, 1); L->signs = calloc(R * sz.signs_row_bytes + 1, 1);
    L->signs2 = calloc(R * sz.signs2_row_bytes + 1, 1); L->salient = calloc(sz.salient_bytes + 1, 1);
    L->groups = calloc(R * sz.groups_row_bytes + 1, 1);
    for (int i = 0; i < R; i++) {
        size_t k = 0;
        for (int q = 0; q < K / m; q++) {
            uint32_t bitmap = 0; /* n distinct random positions */
            while (__builtin_popcount(bitmap) < n) bitmap |= 1u << (rnd() % (uint32_t)m);
            if (w_mask) put_field(L->mask + i * sz.mask_row_bytes, (size_t)q, w_mask, code_of(bitmap, m));
            for (int jj = 0; jj < m; jj++) {
                size_t j = (size_t)q * m + jj, ij = (size_t)i * K + j;
                if (!((bitmap >> jj) & 1u)) continue;
                L->kept[ij] = 1;
                L->s0[ij] = rnd() & 1;
                L->group[ij] = L->sal[j] ? 0 : (uint8_t)(rnd() % (uint32_t)S);
                put_field(L->signs + i * sz.signs_row_bytes, k, 1, L->s0[ij]);
                if (w_group) put_field(L->groups + i * sz.groups_row_bytes, k, w_group, L->group[ij]);
                k++;
            }
        }
        int rank = 0;
        for (int j = 0; j < K; j++) {
            if (!L->sal[j]) continue;
            size_t ij = (size_t)i * K + j;
            L->s1[ij] = L->kept[ij] && (rnd() & 1); /* canonical: 0 where pruned */
            put_field(L->signs2 + i * sz.signs2_row_bytes, (size_t)rank++, 1, L->s1[ij]);
        }
    }
    for (int j = 0; j < K; j++) if (L->sal[j]) put_field(L->salient, (size_t)j, 1, 1);
    L->alpha = malloc(sz.alpha_count * 2 + 2); L->alpha2 = malloc(sz.alpha2_count * 2 + 2);
    L->mu = malloc(sz.mu_count * 2 + 2); L->col_scale = malloc(sz.col_scale_count * 2 + 2);
    for (size_t t = 0; t < sz.alpha_count; t++) L->alpha[t] = rnd_half(-6, 1, 0);
    for (size_t t = 0; t < sz.alpha2_count; t++) L->alpha2[t] = rnd_half(-8, -1, 0);
    for (size_t t = 0; t < sz.mu_count; t++) L->mu[t] = rnd_half(-9, -2, 1);
    for (size_t t = 0; t < sz.col_scale_count; t++) L->col_scale[t] = rnd_half(-2, 1, 0);
    d->mask = w_mask ? L->mask : NULL; d->signs = L->signs;
    d->signs2 = d->has_salient ? L->signs2 : NULL; d->salient = d->has_salient ? L->salient : NULL;
    d->groups = w_group ? L->groups : NULL;
    d->alpha = L->alpha; d->alpha2 = d->has_salient ? L->alpha2 : NULL;
    d->mu = has_mu ? L->mu : NULL; d->col_scale = has_cs ? L->col_scale : NULL;
}

static void free_layer(logical *L) {
    void *p[] = {L->kept, L->s0, L->s1, L->group, L->sal, L->mask, L->signs, L->signs2, L->salient, L->groups,
                 L->alpha, L->alpha2, L->mu, L->col_scale};
    for (size_t t = 0; t < sizeof p / sizeof p[0]; t++) free(p[t]);
}

/* Independent dense evaluation from the logical arrays (FORMAT.md section 6 order); also |coefficient| bounds, with
 * (A) and without (A0) the column scale. */
static void dense(const logical *L, float *W, double *A, double *A0) {
    const pbs2p_layer_desc *d = &L->d;
    size_t R = (size_t)d->rows, K = (size_t)d->cols, G = (K + (size_t)d->group_size - 1) / (size_t)d->group_size;
    for (size_t i = 0; i < R; i++)
        for (size_t j = 0; j < K; j++) {
            size_t ij = i * K + j, g = j / (size_t)d->group_size;
            W[ij] = 0.0f; A[ij] = 0.0; A0[ij] = 0.0;
            if (!L->kept[ij]) continue;
            size_t r = L->sal[j] ? 0 : (size_t)L->group[ij] + (size_t)d->has_salient;
            float a = pbs2p_half_to_float(L->alpha[(r * R + i) * G + g]);
            float v = a * (L->s0[ij] ? 1.0f : -1.0f);
            double bound = fabs(a);
            if (L->sal[j]) {
                float a2 = pbs2p_half_to_float(L->alpha2[i * G + g]);
                v = v + a2 * (L->s1[ij] ? 1.0f : -1.0f);
                bound += fabs(a2);
            }
            if (d->has_mu) { float mu = pbs2p_half_to_float(L->mu[(r * R + i) * G + g]); v = v + mu; bound += fabs(mu); }
            A0[ij] = bound;
            if (d->has_col_scale) { float cs = pbs2p_half_to_float(L->col_scale[r * K + j]); v = v * cs; bound *= fabs(cs); }
            W[ij] = v; A[ij] = bound;
        }
}

/* max over outputs of |Y - Yref| / sum_j A_ij |x_j| */
static double max_rel_err(const float *Y, const float *Yref, const double *A, const float *X, size_t T, int R, int K) {
    double worst = 0.0;
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < (size_t)R; i++) {
            double mag = 0.0;
            for (size_t j = 0; j < (size_t)K; j++) mag += A[i * K + j] * fabs(X[t * K + j]);
            double err = fabs((double)Y[t * R + i] - Yref[t * R + i]) / (mag > 0 ? mag : 1.0);
            if (err > worst) worst = err;
        }
    return worst;
}

/* ---- the checks ---- */
static pbs2p_pool *pool; /* 3 threads, shared by every check_layer */

/* A layer that fits, prepared with plane 1 as kept-order signs (internal.h): every variant's int8 products give the
 * planes' reference bits Yq (T tokens of X, each alone) with a quarter fewer bytes, batched and one token at a time,
 * and the float products refuse it. A variant that does not read the layout runs the reference on it. */
static void check_kept_signs(const pbs2p_layer_desc *d, const pbs2p_layer *planes, const float *X, size_t T,
                             const float *Yq, const char *what) {
    pbs2p_layer *P = NULL;
    CHECK(pbs2p_layer_prepare_as(d, PBS2P_PREPARE_KEPT_SIGNS, &P) == PBS2P_OK, "%s: prepare kept signs: %s", what,
          pbs2p_last_error());
    if (!P) return;
    const size_t R = (size_t)d->rows, K = (size_t)d->cols;
    CHECK(P->kept_signs == pbs2p_kept_signs_fit(d), "%s: kept_signs %d, fit %d", what, P->kept_signs,
          pbs2p_kept_signs_fit(d));
    if (!P->kept_signs) { pbs2p_layer_free(P); return; }
    const size_t bits_planes = R * planes->row_words * 4, bits_signs = R * P->row_words * 4;
    CHECK(4 * bits_signs <= 3 * bits_planes + 8 * R, "%s: kept signs hold %zu bit bytes, the planes %zu", what,
          bits_signs, bits_planes);
    float *Y = malloc(T * R * 4), *y = malloc(R * 4);
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    for (size_t v = 0; v < nv; v++) {
        if (!pbs2p_kernel_available(names[v])) continue;
        CHECK(pbs2p_kernel_select(names[v]) == PBS2P_OK, "select %s", names[v]);
        CHECK(pbs2p_gemm(P, X, 1, K, y, R, 1) == PBS2P_ERR_UNSUPPORTED, "%s: %s float gemm of kept signs not refused",
              what, names[v]);
        CHECK(pbs2p_gemm_pool(P, X, T, T * K, Y, T * R, pool) == PBS2P_OK, "%s: kept signs gemm pool", what);
        CHECK(memcmp(Y, Yq, T * R * 4) == 0, "%s: %s kept signs, %zu tokens, differ from the planes' reference", what,
              names[v], T);
        for (size_t t = 0; t < T; t++) {
            CHECK(pbs2p_gemm_pool(P, X + t * K, 1, K, y, R, t % 2 ? pool : NULL) == PBS2P_OK, "kept signs gemv");
            CHECK(memcmp(y, Yq + t * R, R * 4) == 0, "%s: %s kept signs, token %zu alone, differs from the planes' "
                  "reference", what, names[v], t);
        }
    }
    free(Y); free(y);
    pbs2p_layer_free(P);
}

static void check_layer(int R, int K, int n, int m, int gs, int S, int salient, int has_mu, int has_cs) {
    logical L;
    make_layer(&L, R, K, n, m, gs, S, salient, has_mu, has_cs);
    size_t RK = (size_t)R * K;
    float *W = malloc(RK * 4), *Wq = malloc(RK * 4);
    double *A = malloc(RK * 8), *A0 = malloc(RK * 8);
    dense(&L, W, A, A0);
    char what[160];
    snprintf(what, sizeof what, "R=%d K=%d %d:%d gs=%d S=%d salient=%d mu=%d cs=%d", R, K, n, m, gs, S,
             L.d.has_salient, has_mu, has_cs);

    pbs2p_status st = pbs2p_layer_dequantize_ref(&L.d, Wq, RK);
    CHECK(st == PBS2P_OK, "%s: dequantize: %s", what, pbs2p_last_error());
    CHECK(memcmp(W, Wq, RK * 4) == 0, "%s: dequantize_ref differs from the dense evaluation", what);

    pbs2p_layer *P = NULL;
    st = pbs2p_layer_prepare(&L.d, &P);
    CHECK(st == PBS2P_OK, "%s: prepare: %s", what, pbs2p_last_error());
    if (st != PBS2P_OK) goto out;

    enum { T = 13 }; /* GEMM kernels block tokens by 8, 4, 1 */
    float *X = malloc((size_t)T * K * 4), *Yref = malloc((size_t)T * R * 4), *Y = malloc((size_t)T * R * 4);
    float *y1 = malloc((size_t)R * 4);
    for (size_t t = 0; t < (size_t)T * K; t++) X[t] = rnd_unit();

    CHECK(pbs2p_kernel_select("ref") == PBS2P_OK, "select ref");
    CHECK(pbs2p_gemm(P, X, T, (size_t)T * K, Yref, (size_t)T * R, 1) == PBS2P_OK, "%s: gemm ref: %s", what, pbs2p_last_error());
    /* reference kernel vs double dense product */
    double worst = 0.0;
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < (size_t)R; i++) {
            double exact = 0.0, mag = 0.0;
            for (size_t j = 0; j < (size_t)K; j++) {
                exact += (double)W[i * K + j] * X[t * K + j];
                mag += A[i * K + j] * fabs(X[t * K + j]);
            }
            double err = fabs(Yref[t * R + i] - exact) / (mag > 0 ? mag : 1.0);
            if (err > worst) worst = err;
        }
    CHECK(worst <= KERNEL_RTOL, "%s: ref kernel vs dense: relative error %.3g > %g", what, worst, KERNEL_RTOL);

    /* One token on int8 activations (a model's decode step: pbs2p_gemm_pool, internal.h): the reference's result is
     * the dense product up to the activations' rounding, |x_j - q_j d| <= d / 2 with d = max |x| / 127 over j's block
     * (32 columns of a scale group in the prepared column order, internal.h, times a region's column scale: bounded
     * here by the largest over regions). */
    float *Yq = malloc((size_t)T * R * 4);
    for (size_t t = 0; t < T; t++)
        CHECK(pbs2p_gemm_pool(P, X + t * K, 1, (size_t)K, Yq + t * R, (size_t)R, NULL) == PBS2P_OK, "q8 ref");
    worst = 0.0;
    double *half_step = malloc((size_t)K * sizeof *half_step); /* d / 2 of column j's block, token t */
    for (size_t t = 0; t < T; t++) {
        for (size_t c0 = 0; c0 < (size_t)K; c0 += (size_t)gs) { /* each scale group's blocks of 32, the last cut */
            const size_t gend = c0 + (size_t)gs < (size_t)K ? c0 + (size_t)gs : (size_t)K;
            for (size_t b0 = c0; b0 < gend; b0 += 32) {
                const size_t b1 = b0 + 32 < gend ? b0 + 32 : gend;
                double amax = 0.0;
                for (size_t c = b0; c < b1; c++) {
                    const size_t k = P->perm ? (size_t)P->perm[c] : c; /* the file's column at prepared column c */
                    double cs = 1.0;
                    if (L.d.has_col_scale) {
                        cs = 0.0;
                        for (size_t r = 0; r < (size_t)L.d.split + (size_t)L.d.has_salient; r++)
                            cs = fmax(cs, fabs(pbs2p_half_to_float(L.d.col_scale[r * K + k])));
                    }
                    amax = fmax(amax, fabs(X[t * K + k]) * cs);
                }
                for (size_t c = b0; c < b1; c++) half_step[P->perm ? (size_t)P->perm[c] : c] = amax / 127.0 / 2.0;
            }
        }
        for (size_t i = 0; i < (size_t)R; i++) {
            double exact = 0.0, mag = 0.0, rounding = 0.0;
            for (size_t j = 0; j < (size_t)K; j++) {
                exact += (double)W[i * K + j] * X[t * K + j];
                mag += A[i * K + j] * fabs(X[t * K + j]);
                rounding += A0[i * K + j] * half_step[j];
            }
            double excess = fabs(Yq[t * R + i] - exact) - rounding * (1.0 + 1e-6) - 2 * KERNEL_RTOL * mag;
            if (excess / (mag > 0 ? mag : 1.0) > worst) worst = excess / (mag > 0 ? mag : 1.0);
        }
    }
    free(half_step);
    CHECK(worst <= 0.0, "%s: one token on int8 activations (ref) exceeds the rounding bound by %.3g of the magnitude",
          what, worst);

    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    float *Y1 = malloc((size_t)T * R * 4), *y3 = malloc((size_t)R * 4);
    for (size_t v = 0; v < nv; v++) {
        if (!pbs2p_kernel_available(names[v])) continue;
        CHECK(pbs2p_kernel_select(names[v]) == PBS2P_OK, "select %s", names[v]);
        CHECK(pbs2p_gemm(P, X, T, (size_t)T * K, Y1, (size_t)T * R, 1) == PBS2P_OK, "%s: gemm %s", what, names[v]);
        CHECK(pbs2p_gemm(P, X, T, (size_t)T * K, Y, (size_t)T * R, 3) == PBS2P_OK, "%s: gemm %s", what, names[v]);
        CHECK(memcmp(Y, Y1, (size_t)T * R * 4) == 0, "%s: %s gemm differs between 1 and 3 threads", what, names[v]);
        /* a model's products (pbs2p_gemm_pool, int8 activations): the reference's bits for each token of the batch */
        CHECK(pbs2p_gemm_pool(P, X, T, (size_t)T * K, Y1, (size_t)T * R, pool) == PBS2P_OK, "%s: gemm pool", what);
        CHECK(memcmp(Yq, Y1, (size_t)T * R * 4) == 0, "%s: %s products of %d tokens on a pool of 3 differ from the "
              "reference's tokens alone", what, names[v], (int)T);
        double vw = max_rel_err(Y, Yref, A, X, T, R, K);
        CHECK(vw <= KERNEL_RTOL, "%s: %s gemm vs ref: relative error %.3g > %g", what, names[v], vw, KERNEL_RTOL);
        for (size_t t = 0; t < T; t += T - 1) { /* batch invariance: a token alone == the same token in a batch */
            CHECK(pbs2p_gemm(P, X + t * K, 1, (size_t)K, y1, (size_t)R, 1) == PBS2P_OK, "gemm 1 token");
            CHECK(memcmp(y1, Y + t * R, (size_t)R * 4) == 0, "%s: %s gemm of token %zu alone differs from the batch",
                  what, names[v], t);
        }
        for (size_t t = 0; t < T; t++) { /* gemv: within tolerance of the reference, identical for any threads */
            CHECK(pbs2p_gemv(P, X + t * K, (size_t)K, y1, (size_t)R, 1) == PBS2P_OK, "gemv");
            CHECK(pbs2p_gemv(P, X + t * K, (size_t)K, y3, (size_t)R, 3) == PBS2P_OK, "gemv");
            CHECK(memcmp(y1, y3, (size_t)R * 4) == 0, "%s: %s gemv differs between 1 and 3 threads", what, names[v]);
            CHECK(pbs2p_gemm_pool(P, X + t * K, 1, (size_t)K, y3, (size_t)R, pool) == PBS2P_OK, "gemv pool");
            CHECK(memcmp(Yq + t * R, y3, (size_t)R * 4) == 0, "%s: %s one token on a pool of 3 differs from the "
                  "reference", what, names[v]);
            memcpy(Y + t * R, y1, (size_t)R * 4);
        }
        vw = max_rel_err(Y, Yref, A, X, T, R, K);
        CHECK(vw <= KERNEL_RTOL, "%s: %s gemv vs ref: relative error %.3g > %g", what, names[v], vw, KERNEL_RTOL);
    }
    check_kept_signs(&L.d, P, X, T, Yq, what);
    free(Y1); free(y3); free(Yq);
    CHECK(pbs2p_kernel_select(NULL) == PBS2P_OK, "select auto");
    free(X); free(Yref); free(Y); free(y1);
out:
    pbs2p_layer_free(P);
    free(W); free(Wq); free(A); free(A0);
    free_layer(&L);
}

static void check_half(void) {
#ifdef __FLT16_MAX__
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 f16;
        uint16_t b = (uint16_t)h;
        memcpy(&f16, &b, 2);
        float want = (float)f16, got = pbs2p_half_to_float(b);
        if (want != want) { CHECK(got != got, "half %04x: expected nan", h); continue; }
        CHECK(memcmp(&want, &got, 4) == 0, "half %04x: %a != %a", h, (double)got, (double)want);
    }
#else
    CHECK(pbs2p_half_to_float(0x0001) == 5.9604644775390625e-08f, "smallest subnormal");
    CHECK(pbs2p_half_to_float(0x3C00) == 1.0f && pbs2p_half_to_float(0xC000) == -2.0f, "1 and -2");
#endif
}

static void check_errors(void) {
    logical L;
    make_layer(&L, 4, 16, 4, 8, 8, 1, 0, 1, 0);
    pbs2p_layer *P = NULL;
    float x[16] = {0}, y[4];
    CHECK(pbs2p_layer_prepare(NULL, &P) == PBS2P_ERR_NULL, "NULL desc");
    CHECK(pbs2p_layer_prepare(&L.d, NULL) == PBS2P_ERR_NULL, "NULL out");
    pbs2p_layer_desc bad = L.d;
    bad.cols = 12;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_ARGUMENT && P == NULL, "K %% M");
    CHECK(strstr(pbs2p_last_error(), "multiple of M=8") != NULL, "message names the rule: %s", pbs2p_last_error());
    bad = L.d; bad.n = 9;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_ARGUMENT, "N > M");
    bad = L.d; bad.m = 6;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_ARGUMENT, "M = 6");
    bad = L.d; bad.format_version = 2;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_VERSION, "version 2");
    bad = L.d; bad.mu = NULL;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_NULL, "missing mu stream");
    bad = L.d; bad.has_salient = 1; bad.n_salient = 0;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_ARGUMENT, "salient flag without columns");
    uint8_t corrupt[8];
    memcpy(corrupt, L.mask, 4); /* row 0: K/M = 2 codes of 7 bits in 2 bytes */
    corrupt[0] = 0x7F;          /* code 127 >= C(8, 4) = 70 */
    memcpy(corrupt + 2, L.mask + 2, 6);
    bad = L.d; bad.mask = corrupt;
    CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_FORMAT, "mask code out of range");
    float out[64];
    CHECK(pbs2p_layer_dequantize_ref(&bad, out, 64) == PBS2P_ERR_FORMAT, "dequantize: bad code");
    /* a NaN or infinite float16 scale (the last alpha, the first mu) is a damaged layer, not NaN outputs */
    uint16_t scales[64];
    pbs2p_layer_sizes sz;
    CHECK(pbs2p_layer_sizes_of(&L.d, &sz) == PBS2P_OK, "sizes");
    const size_t n = 4 * sz.groups_per_row * sz.regions; /* alpha and mu: (regions, R, G) */
    for (int which = 0; which < 3; which++) {
        bad = L.d;
        memcpy(scales, which < 2 ? L.d.alpha : L.d.mu, n * sizeof *scales);
        scales[which < 2 ? n - 1 : 0] = which == 0 ? 0x7E00 : 0xFC00; /* NaN, -inf */
        if (which < 2) bad.alpha = scales; else bad.mu = scales;
        CHECK(pbs2p_layer_prepare(&bad, &P) == PBS2P_ERR_FORMAT && P == NULL, "non-finite scale %d", which);
        CHECK(strstr(pbs2p_last_error(), which == 0 ? "is NaN" : "is infinite") != NULL, "%s", pbs2p_last_error());
        CHECK(pbs2p_layer_dequantize_ref(&bad, out, 64) == PBS2P_ERR_FORMAT, "dequantize: non-finite scale");
    }
    CHECK(pbs2p_layer_dequantize_ref(&L.d, out, 63) == PBS2P_ERR_ARGUMENT, "dequantize: short output");

    CHECK(pbs2p_layer_prepare(&L.d, &P) == PBS2P_OK, "prepare");
    CHECK(pbs2p_gemv(P, x, 15, y, 4, 1) == PBS2P_ERR_ARGUMENT, "x_len");
    CHECK(pbs2p_gemv(P, x, 16, y, 5, 1) == PBS2P_ERR_ARGUMENT, "y_len");
    CHECK(pbs2p_gemv(P, NULL, 16, y, 4, 1) == PBS2P_ERR_NULL, "NULL x");
    CHECK(pbs2p_gemv(P, x, 16, y, 4, 0) == PBS2P_ERR_ARGUMENT, "0 threads");
    CHECK(pbs2p_gemm(P, x, 0, 0, y, 0, 1) == PBS2P_ERR_ARGUMENT, "0 tokens");
    CHECK(pbs2p_gemv(NULL, x, 16, y, 4, 1) == PBS2P_ERR_NULL, "NULL layer");
    CHECK(pbs2p_kernel_select("sse9") == PBS2P_ERR_NO_KERNEL, "unknown variant");
    CHECK(pbs2p_kernel_name() == NULL, "no kernel selected after a failed select");
    CHECK(pbs2p_gemv(P, x, 16, y, 4, 1) == PBS2P_ERR_NO_KERNEL, "gemv with an unavailable forced kernel");
    CHECK(pbs2p_kernel_select(NULL) == PBS2P_OK && pbs2p_kernel_name() != NULL, "back to automatic");
    CHECK(pbs2p_gemv(P, x, 16, y, 4, 1) == PBS2P_OK, "gemv");
    CHECK(strcmp(pbs2p_status_str(PBS2P_ERR_FORMAT), "corrupt packed layer") == 0, "status_str");
    pbs2p_layer_free(P);
    free_layer(&L);
}

int main(void) {
    setenv("PBS2P_MIN_WORK_PER_THREAD", "1", 1); /* every product may use all the threads asked for */
    check_half();
    check_errors();
    if (pbs2p_pool_new(3, &pool) != PBS2P_OK) { fprintf(stderr, "pool: %s\n", pbs2p_last_error()); return 2; }
    static const int rows[] = {1, 7, 127, 129, 576, 1023};
    static const int cols[] = {8, 136, 576, 1024};
    static const int gsizes[] = {128, 100, 7, 576, 64, 1024};
    int c = 0;
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (int n = 1; n <= 8; n++, c++) {
                /* the flags cycle so every (salient, S, mu, col_scale) combination meets many shapes */
                int big = rows[a] * cols[b] > 200000;
                if (big && n != 6) continue; /* keep the run short: the largest shapes at N = 6 only */
                check_layer(rows[a], cols[b], n, 8, gsizes[c % 6], 1 + c % 3, (c / 3) % 2, (c / 6) % 2, (c / 12) % 2);
            }
    for (int m = 2; m <= 16; m *= 2)
        for (int n = 1; n <= m; n += (m > 4 ? 3 : 1))
            check_layer(33, 4 * m + 16, n, m, 16, 2, n % 2, 1, n % 3 == 0);
    /* layers that hold kept-order signs (M = 2 N, whole words): rows past whole blocks of 16 (the last block's odd
     * row pair), a short last scale group, every M, with and without mu and column scales */
    check_layer(129, 576, 4, 8, 128, 1, 0, 1, 0);
    check_layer(7, 1024, 4, 8, 1024, 1, 0, 0, 1);
    check_layer(17, 96, 2, 4, 64, 1, 0, 1, 0);
    check_layer(31, 64, 1, 2, 32, 1, 0, 0, 0);
    check_layer(20, 160, 8, 16, 5000, 1, 0, 1, 1);
    check_layer(45, 4128, 4, 8, 4128, 1, 0, 1, 0);
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    printf("variants:");
    for (size_t v = 0; v < nv; v++) printf(" %s%s", names[v], pbs2p_kernel_available(names[v]) ? "" : "(no cpu)");
    printf("; automatic: %s\n", pbs2p_kernel_name());
    pbs2p_pool_free(pool);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("all kernel checks passed\n");
    return 0;
}
