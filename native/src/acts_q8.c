/* acts_q8.c — the activations of an integer dense product (the head, grid-tier linears), quantized once per product
 * as llama.cpp's Q8_0 quantizes them: blocks of 32, d = max|x| / 127, q = x * (127 / max|x|) rounded to nearest,
 * ties to even (-127..127),
 * with each block's code sum (for Q4_0's offset) and d * sum (for the mins of our blocks of 64). Plain C shared by
 * every kernel variant, so all of them multiply the same integers. */
#include "internal.h"

#include <math.h>

/* 1.5 * 2^23: adding and subtracting it rounds a float of magnitude below 2^22 to an integer, ties to even, in the
 * default rounding mode, without a call into libm; the loop vectorizes. */
#define ROUND 12582912.0f

size_t pbs2p_q8_acts_bytes(size_t n_tokens, int32_t cols) {
    const size_t blocks = (size_t)cols / PBS2P_ACT_BLOCK;
    return n_tokens * (blocks * (2 * sizeof(float) + sizeof(int32_t)) + (size_t)cols);
}

void pbs2p_q8_acts_quantize(const float *X, size_t n_tokens, int32_t cols, void *mem, pbs2p_q8_acts *A) {
    const size_t nb = (size_t)cols / PBS2P_ACT_BLOCK, nt = n_tokens;
    float *d = mem, *s = d + nt * nb;
    int32_t *sum = (int32_t *)(s + nt * nb);
    int8_t *q = (int8_t *)(sum + nt * nb);
    *A = (pbs2p_q8_acts){q, d, s, sum, cols, (int32_t)nb};
    for (size_t b = 0; b < nt * nb; b++) {
        const float *x = X + b * PBS2P_ACT_BLOCK; /* block b of token b / nb: rows of X are cols = 32 nb apart */
        int8_t *qb = q + b * PBS2P_ACT_BLOCK;
        float amax = 0.0f, probe = 0.0f;
        for (int j = 0; j < PBS2P_ACT_BLOCK; j++) {
            const float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
            probe += x[j] * 0.0f; /* NaN once any x is a NaN or an infinity */
        }
        int32_t total = 0;
        if (probe != 0.0f || !isfinite(amax)) { /* codes 0 and d NaN: every product with this block is NaN */
            for (int j = 0; j < PBS2P_ACT_BLOCK; j++) qb[j] = 0;
            d[b] = NAN;
        } else {
            d[b] = amax / 127.0f;
            const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int j = 0; j < PBS2P_ACT_BLOCK; j++) {
                float v = x[j] * id;
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                v = (v + ROUND) - ROUND; /* to nearest, ties to even: |v| <= 127 < 2^22 */
                qb[j] = (int8_t)(int32_t)v;
            }
            for (int j = 0; j < PBS2P_ACT_BLOCK; j++) total += qb[j];
        }
        sum[b] = total;
        s[b] = d[b] * (float)total;
    }
}

pbs2p_q8_acts pbs2p_q8_acts_at(const pbs2p_q8_acts *A, size_t t) {
    const size_t nb = (size_t)A->blocks;
    return (pbs2p_q8_acts){A->q + t * (size_t)A->cols, A->d + t * nb, A->s + t * nb, A->sum + t * nb, A->cols, A->blocks};
}
