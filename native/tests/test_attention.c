/* test_attention.c — ctest: every compiled variant's attention of one query and head (pbs2p_kernels.attend) against
 * a double-precision softmax(q.k) v, at head sizes and position counts that leave remainders of every loop; the
 * keys read transposed with a row stride above n, the values with a stride above hd (as in the KV cache); and the
 * softmax's e^x (exp_approx.h) against libm's exp in double. */
#include "internal.h"
#include "exp_approx.h"
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

int main(void) {
    check_exp();
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    static const int32_t hds[] = {1, 3, 4, 7, 64, 67, 128};
    static const int32_t ns[] = {1, 2, 3, 4, 5, 17, 64, 301};
    for (size_t i = 0; i < nv; i++) {
        if (!pbs2p_kernel_available(names[i])) continue;
        pbs2p_kernels k;
        CHECK(pbs2p_kernel_select(names[i]) == PBS2P_OK && pbs2p_kernel_current(&k), "select %s", names[i]);
        for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
            for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) check(names[i], k.attend, hds[a], ns[b]);
        printf("attention %s: ok\n", names[i]);
    }
    pbs2p_kernel_select(NULL);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("all attention checks passed\n");
    return 0;
}
