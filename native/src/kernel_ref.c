/* kernel_ref.c — scalar reference kernel over the prepared bit planes; the SIMD variants are tested against it. */
#include "internal.h"

/* Partial sums in double, so the reference is the most accurate variant, not merely the slowest. */
void pbs2p_rows_ref(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                    float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes;
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    for (int32_t i = row0; i < row1; i++) {
        const size_t nr = pbs2p_block_rows(L, (size_t)i);
        for (size_t t = 0; t < n_tokens; t++) {
            const float *xt = xs + t * (size_t)L->n_xs * xstride;
            double acc = 0.0;
            for (size_t g = 0; g < G; g++) {
                size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
                for (size_t p = 0; p < P; p++) {
                    const uint32_t *b = pbs2p_plane_bits(L, (size_t)i, g, p);
                    const float *x = xt + (size_t)L->plane_xs[p] * xstride + c0;
                    size_t lo, hi;
                    pbs2p_plane_words(L, g, p, &lo, &hi);
                    const size_t c1 = 32 * hi < len ? 32 * hi : len;
                    double s = 0.0;
                    for (size_t c = 32 * lo; c < c1; c++)
                        if (pbs2p_plane_field(b, nr, c - 32 * lo, 1)) s += x[c];
                    acc += (double)pbs2p_plane_coef(L, (size_t)i, g, p) * s;
                }
            }
            Y[t * ldy + (size_t)i] = (float)acc;
        }
    }
}
