/* test_attention.c — ctest: every compiled variant's attention of one query and head (pbs2p_kernels.attend) against
 * a double-precision softmax(q.k) v, at head sizes and position counts that leave remainders of every loop; the
 * keys read transposed with a row stride above n, the values with a stride above hd (as in the KV cache); the
 * float16-cache kernel (attend_f16, 1 to PBS2P_ATTEND_F16_QUERIES queries sharing a head, its cache in spans of tiles
 * with windows starting inside them) bit for bit the float32 one on the widened cache for each query, past a span and
 * its chunk of 256 columns; each variant's widen (its
 * float16 -> float32 rows, model_forward.c's once-per-layer copy) against pbs2p_half_to_float on every float16, at a
 * length that leaves every remainder; the block kernel (attend_block: query heads sharing a KV head, consecutive
 * causal tokens, sliding windows) bit for bit attend on each query;
 * float32 -> float16 rounding (pbs2p_float_to_half) against every float16; and the softmax's e^x (exp_approx.h)
 * against libm's exp in double. */
#include "internal.h"
#include "exp_approx.h"
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(const char *name, pbs2p_attend_fn attend, int32_t hd, int32_t n) {
    const size_t ldk = (size_t)n + 3, ldv = (size_t)hd + 5;
    float *q = malloc(sizeof(float) * hd), *kt = malloc(sizeof(float) * hd * ldk), *v = malloc(sizeof(float) * n * ldv);
    float *scores = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * hd);
    double *w = malloc(sizeof(double) * n);
    for (int32_t d = 0; d < hd; d++) q[d] = 2.0f * rnd_unit();
    for (size_t i = 0; i < (size_t)hd * ldk; i++) kt[i] = 2.0f * rnd_unit();
    for (size_t i = 0; i < (size_t)n * ldv; i++) v[i] = rnd_unit();
    const float scale = 1.0f / sqrtf((float)hd);
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);

    double mx = -INFINITY, sum = 0.0;
    for (int32_t p = 0; p < n; p++) {
        double s = 0.0;
        for (int32_t d = 0; d < hd; d++) s += (double)q[d] * kt[(size_t)d * ldk + (size_t)p];
        w[p] = s * scale;
        mx = w[p] > mx ? w[p] : mx;
    }
    for (int32_t p = 0; p < n; p++) sum += (w[p] = exp(w[p] - mx));
    double worst = 0.0;
    for (int32_t d = 0; d < hd; d++) {
        double o = 0.0;
        for (int32_t p = 0; p < n; p++) o += w[p] / sum * v[(size_t)p * ldv + (size_t)d];
        worst = fmax(worst, fabs(out[d] - o));
    }
    /* outputs are convex combinations of values in [-1, 1]; float32 scores of hd terms of size <= 4 */
    CHECK(worst <= 2e-5, "%s hd=%d n=%d: max |out - exact| = %g", name, hd, n, worst);
    free(q); free(kt); free(v); free(scores); free(out); free(w);
}

/* attend_f16 of nq queries on float16 keys and values in spans of tiles (internal.h), `gap` entries between spans,
 * over positions first .. first + n - 1, equals attend of each query on the same values widened (transposed keys,
 * value rows), every bit. */
static void check_f16(const char *name, const pbs2p_kernels *k, int32_t hd, int32_t first, int32_t n, int32_t nq,
                      size_t gap) {
    const int32_t end = first + n, T = PBS2P_KV_TILE, span = T * PBS2P_KV_SPAN, spans = (end + span - 1) / span;
    const size_t stride = (size_t)hd * span + gap, ldk = (size_t)n + 3, ldv = (size_t)hd + 5, lds = (size_t)n + 1;
    uint16_t *kh = malloc(2 * (size_t)spans * stride), *vh = malloc(2 * (size_t)spans * stride);
    float *q = malloc(sizeof(float) * hd * nq), *kt = malloc(sizeof(float) * hd * ldk);
    float *v = malloc(sizeof(float) * n * ldv), *scores = malloc(sizeof(float) * lds * nq);
    float *want = malloc(sizeof(float) * hd), *got = malloc(sizeof(float) * hd * nq);
    const float *qp[PBS2P_ATTEND_F16_QUERIES];
    float *op[PBS2P_ATTEND_F16_QUERIES];
    for (size_t i = 0; i < (size_t)hd * nq; i++) q[i] = 2.0f * rnd_unit();
    for (size_t i = 0; i < (size_t)spans * stride; i++) {
        kh[i] = pbs2p_float_to_half(2.0f * rnd_unit());
        vh[i] = pbs2p_float_to_half(rnd_unit());
    }
    for (int32_t p = first; p < end; p++) /* the positions in view as attend reads them */
        for (int32_t d = 0; d < hd; d++) {
            const uint16_t key = kh[pbs2p_kv_key(stride, hd, p) + (size_t)d * T];
            const uint16_t value = vh[pbs2p_kv_value(stride, hd, p) + (size_t)d];
            kt[(size_t)d * ldk + (size_t)(p - first)] = pbs2p_half_to_float(key);
            v[(size_t)(p - first) * ldv + (size_t)d] = pbs2p_half_to_float(value);
        }
    for (int32_t i = 0; i < nq; i++) qp[i] = q + (size_t)i * hd, op[i] = got + (size_t)i * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    k->attend_f16(nq, qp, op, kh, vh, stride, first, n, hd, scale, scores, lds);
    int32_t bad = -1;
    for (int32_t i = 0; i < nq && bad < 0; i++) {
        k->attend(qp[i], kt, ldk, v, ldv, n, hd, scale, scores, want);
        if (memcmp(want, op[i], sizeof(float) * hd) != 0) bad = i;
    }
    CHECK(bad < 0, "%s attend_f16 hd=%d first=%d n=%d nq=%d gap=%zu: query %d differs from attend on the widened cache",
          name, hd, first, n, nq, gap, bad);
    free(kh); free(vh); free(q); free(kt); free(v); free(scores); free(want); free(got);
}

/* attend_block of nq queries equals attend of each query on its own range, every bit. The queries are `heads` query
 * heads of consecutive tokens: query i ends at n0 + i / heads + 1 (a causal prompt: a later token sees more; heads =
 * 1: one head's tokens, heads >= nq: one token's heads, all the same range), and starts at 0 or, with a window,
 * window positions before its end (a sliding window). */
static void check_block(const char *name, const pbs2p_kernels *k, int32_t hd, int32_t n0, int32_t nq, int32_t heads,
                        int32_t window) {
    const int32_t n_all = n0 + (nq + heads - 1) / heads; /* positions the last query sees */
    const size_t ldk = (size_t)n_all + 3, ldv = (size_t)hd + 5, lds = (size_t)n_all + 1;
    float *q = malloc(sizeof(float) * hd * nq), *kt = malloc(sizeof(float) * hd * ldk);
    float *v = malloc(sizeof(float) * n_all * ldv), *scores = malloc(sizeof(float) * lds * nq);
    float *want = malloc(sizeof(float) * hd), *got = malloc(sizeof(float) * hd * nq);
    const float **qp = malloc(sizeof *qp * nq);
    float **op = malloc(sizeof *op * nq);
    int32_t *first = malloc(sizeof *first * nq), *n = malloc(sizeof *n * nq);
    for (size_t i = 0; i < (size_t)hd * nq; i++) q[i] = 2.0f * rnd_unit();
    for (size_t i = 0; i < (size_t)hd * ldk; i++) kt[i] = 2.0f * rnd_unit();
    for (size_t i = 0; i < (size_t)n_all * ldv; i++) v[i] = rnd_unit();
    for (int32_t i = 0; i < nq; i++) {
        const int32_t end = n0 + i / heads + 1;
        first[i] = window && end > window ? end - window : 0;
        n[i] = end - first[i];
        qp[i] = q + (size_t)i * hd;
        op[i] = got + (size_t)i * hd;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    k->attend_block(nq, qp, op, first, n, kt, ldk, v, ldv, hd, scale, scores, lds);
    int32_t bad = -1;
    for (int32_t i = 0; i < nq && bad < 0; i++) {
        k->attend(qp[i], kt + first[i], ldk, v + (size_t)first[i] * ldv, ldv, n[i], hd, scale, scores, want);
        if (memcmp(want, op[i], sizeof(float) * hd) != 0) bad = i;
    }
    CHECK(bad < 0, "%s attend_block hd=%d n0=%d nq=%d heads=%d window=%d: query %d differs from attend", name, hd,
          n0, nq, heads, window, bad);
    free(q); free(kt); free(v); free(scores); free(want); free(got); free(qp); free(op); free(first); free(n);
}

/* pbs2p_float_to_half: every float16 comes back exactly; a float between two neighbours rounds to the nearer, a tie
 * to the even one; beyond 65504 (and infinities) saturates to +-65504; NaN stays NaN. */
static void check_float_to_half(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        const float x = pbs2p_half_to_float((uint16_t)h);
        const uint16_t back = pbs2p_float_to_half(x);
        if (isnan(x)) bad += (back & 0x7C00u) != 0x7C00u || !(back & 0x3FFu);
        else if (isinf(x)) bad += back != ((h & 0x8000u) | 0x7BFFu);
        else bad += back != h;
        if ((h & 0x7C00u) == 0x7C00u || (h & 0x7FFFu) == 0x7BFFu) continue; /* no finite upper neighbour */
        /* between h and its upper neighbour (in magnitude): 1/4 of the way, the midpoint, 3/4 of the way */
        const float y = pbs2p_half_to_float((uint16_t)(h + 1));
        const float quarter = x + (y - x) * 0.25f, mid = x + (y - x) * 0.5f, three = x + (y - x) * 0.75f;
        const uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        bad += pbs2p_float_to_half(quarter) != h || pbs2p_float_to_half(three) != (uint16_t)(h + 1) ||
               pbs2p_float_to_half(mid) != even;
    }
    CHECK(bad == 0, "pbs2p_float_to_half: %d wrong roundings", bad);
    CHECK(pbs2p_float_to_half(65519.0f) == 0x7BFFu && pbs2p_float_to_half(65520.0f) == 0x7BFFu &&
          pbs2p_float_to_half(-1e30f) == 0xFBFFu && pbs2p_float_to_half(1e-10f) == 0 &&
          pbs2p_float_to_half(-0.0f) == 0x8000u, "pbs2p_float_to_half: saturation / underflow");
}

/* exp_approx.h: within one float32 ulp of e^x on its range (a ulp taken as e^x * 2^-23), exact at 0, NaN kept,
 * clamped (finite, positive) outside [-87, 88]. */
static void check_exp(void) {
    double worst = 0.0;
    for (int i = 0; i <= 350000; i++) {
        const float x = -87.0f + (float)i * 0.0005f;
        if (x > 88.0f) break; /* the last step's rounding lands just above the range */
        const double e = exp((double)x), err = fabs((double)exp_approx(x) - e) / (e * 0x1p-23);
        worst = err > worst ? err : worst;
    }
    CHECK(worst <= 1.0, "exp_approx: %g ulp from e^x", worst);
    CHECK(exp_approx(0.0f) == 1.0f, "exp_approx(0) = %.9g", exp_approx(0.0f));
    CHECK(isnan(exp_approx(NAN)), "exp_approx(NaN) is not NaN");
    const float lo = exp_approx(-1000.0f), hi = exp_approx(1000.0f);
    CHECK(lo > 0.0f && lo < 2e-38f && isfinite(hi) && hi > 1e38f, "exp_approx clamps: %g %g", lo, hi);
}

/* widen of all 65536 float16 bit patterns (plus 3, so the vector loop leaves a tail) gives pbs2p_half_to_float's
 * bits for every number and infinity, and a NaN for every NaN (F16C quiets a signalling NaN; the cache holds only the
 * quiet 0x7E00 that pbs2p_float_to_half writes). */
static void check_widen(const char *name, pbs2p_widen_fn widen) {
    const int32_t n = 65536 + 3;
    uint16_t *h = malloc(2 * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)n);
    for (int32_t i = 0; i < n; i++) h[i] = (uint16_t)i;
    widen(h, got, n);
    int32_t bad = -1;
    for (int32_t i = 0; i < n && bad < 0; i++) {
        const float want = pbs2p_half_to_float(h[i]);
        if (isnan(want) ? !isnan(got[i]) : memcmp(&got[i], &want, sizeof want) != 0) bad = i;
    }
    CHECK(bad < 0, "%s widen: float16 0x%04x differs from pbs2p_half_to_float", name, bad < 0 ? 0 : h[bad]);
    free(h); free(got);
}

int main(void) {
    check_exp();
    check_float_to_half();
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    static const int32_t hds[] = {1, 3, 4, 7, 64, 67, 128};
    static const int32_t ns[] = {1, 2, 3, 4, 5, 17, 64, 301};
    for (size_t i = 0; i < nv; i++) {
        if (!pbs2p_kernel_available(names[i])) continue;
        pbs2p_kernels k;
        CHECK(pbs2p_kernel_select(names[i]) == PBS2P_OK && pbs2p_kernel_current(&k), "select %s", names[i]);
        check_widen(names[i], k.widen);
        for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
            for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) check(names[i], k.attend, hds[a], ns[b]);
        static const int32_t hds16[] = {1, 3, 16, 48, 64, 67, 96, 128, 256, 300}, ns16[] = {1, 5, 255, 256, 257, 600};
        for (size_t a = 0; a < sizeof hds16 / sizeof hds16[0]; a++)
            for (size_t b = 0; b < sizeof ns16 / sizeof ns16[0]; b++)
                for (int32_t nq = 1; nq <= PBS2P_ATTEND_F16_QUERIES; nq++)
                    for (int32_t first = 0; first < 40; first += 19) /* 0, and windows starting in tiles 0 and 1 */
                        check_f16(names[i], &k, hds16[a], first, ns16[b], nq, first ? 77 : 0);
        /* SmolLM2 (hd 64) and Gemma 3 (hd 256) heads, odd ones; key chunks of 256 and value groups of 4 cut anywhere;
         * every block size up to the kernel's and past it; no window, a short one (every query its own start within
         * one key chunk), and one of 261 positions (queries with different starts over two key chunks, as a long
         * prompt under Gemma's window) */
        static const int32_t hdsb[] = {1, 3, 64, 67, 256}, nsb[] = {0, 4, 16, 254, 300}, heads[] = {1, 3, 16};
        for (size_t a = 0; a < sizeof hdsb / sizeof hdsb[0]; a++)
            for (size_t b = 0; b < sizeof nsb / sizeof nsb[0]; b++)
                for (int32_t nq = 1; nq <= PBS2P_ATTEND_MAX_QUERIES + 5; nq += nq < PBS2P_ATTEND_MAX_QUERIES ? 1 : 5)
                    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
                        check_block(names[i], &k, hdsb[a], nsb[b], nq, heads[h], 0);
                        check_block(names[i], &k, hdsb[a], nsb[b], nq, heads[h], 7);
                        check_block(names[i], &k, hdsb[a], nsb[b], nq, heads[h], 261);
                    }
        printf("attention %s: ok\n", names[i]);
    }
    pbs2p_kernel_select(NULL);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("all attention checks passed\n");
    return 0;
}
