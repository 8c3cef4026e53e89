/* kernel_q8_ref.c — the reference of the packed layers' products on int8 activations (internal.h): the definition
 * every variant's kernel_q8 gives bit for bit. */
#include "internal.h"

#include <math.h>

void pbs2p_rows_q8_ref(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                       int32_t row0, int32_t row1) {
    const size_t G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    for (size_t t = 0; t < n_tokens; t++) {
        const pbs2p_q8_acts At = pbs2p_q8_acts_at(A, t);
        for (int32_t i = row0; i < row1; i++) {
            float acc = 0.0f;
            for (size_t g = 0; g < G; g++)
                for (size_t p = 0; p < P; p++) {
                    const size_t block0 = ((size_t)L->plane_xs[p] * G + g) * W;
                    size_t lo, hi;
                    pbs2p_plane_words(L, g, p, &lo, &hi);
                    float s = 0.0f;
                    for (size_t w = lo; w < hi; w++) {
                        const uint32_t bits = pbs2p_plane_word(L, (size_t)i, g, p, w);
                        const int8_t *q = At.q + (block0 + w) * PBS2P_ACT_BLOCK;
                        int32_t sum = 0;
                        for (int c = 0; c < 32; c++)
                            if (bits >> c & 1u) sum += q[c];
                        s = fmaf((float)sum, At.d[block0 + w], s);
                    }
                    acc = fmaf(pbs2p_plane_coef(L, (size_t)i, g, p), s, acc);
                }
            Y[t * ldy + (size_t)i] = acc;
        }
    }
}
