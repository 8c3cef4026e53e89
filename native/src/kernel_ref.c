/* kernel_ref.c — scalar reference kernel over the prepared bit planes; the SIMD variants are tested against it. */
#include "internal.h"

/* Partial sums in double, so the reference is the most accurate variant, not merely the slowest. */
void pbs2p_rows_ref(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                    float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    for (int32_t i = row0; i < row1; i++) {
        const uint64_t *rbits = L->bits + (size_t)i * G * P * W;
        const float *rcoef = L->coef + (size_t)i * G * P;
        for (size_t t = 0; t < n_tokens; t++) {
            const float *xt = xs + t * (size_t)L->n_xs * xstride;
            double acc = 0.0;
            for (size_t g = 0; g < G; g++) {
                size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
                for (size_t p = 0; p < P; p++) {
                    const uint64_t *b = rbits + (g * P + p) * W;
                    const float *x = xt + (size_t)L->plane_xs[p] * xstride + c0;
                    double s = 0.0;
                    for (size_t c = 0; c < len; c++)
                        if ((b[c / 64] >> (c % 64)) & 1u) s += x[c];
                    acc += (double)rcoef[g * P + p] * s;
                }
            }
            Y[t * ldy + (size_t)i] = (float)acc;
        }
    }
}
