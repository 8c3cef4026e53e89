/* acts_q8.c — the activations of an integer dense product (the head, grid-tier linears), quantized once per product
 * as llama.cpp's Q8_0 quantizes them: blocks of 32, d = max|x| / 127, q = x * (127 / max|x|) rounded to nearest,
 * ties to even (-127..127), with each block's code sum (for Q4_0's offset), d * sum (for the mins of our blocks
 * of 64) and d * the sums of its two halves of 16 (for the mins of our two-level blocks). Shared by every
 * kernel variant, so all of them multiply the same integers; SSE2 (every x86-64) where there is SSE2, plain C
 * elsewhere, AVX-512 (acts_q8_avx512.c) under the avx512 kernel variant: the same IEEE operations in all three. */
#include "internal.h"

#include <math.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* 1.5 * 2^23: adding and subtracting it rounds a float of magnitude below 2^22 to an integer, ties to even, in the
 * default rounding mode, without a call into libm; the loop vectorizes. */
#define ROUND 12582912.0f

size_t pbs2p_q8_acts_bytes(size_t n_tokens, int32_t cols) {
    const size_t blocks = (size_t)cols / PBS2P_ACT_BLOCK;
    return n_tokens * (blocks * (4 * sizeof(float) + sizeof(int32_t)) + (size_t)cols);
}

void pbs2p_q8_acts_init(void *mem, size_t n_tokens, int32_t cols, pbs2p_q8_acts *A) {
    const size_t nb = (size_t)cols / PBS2P_ACT_BLOCK, nt = n_tokens;
    float *d = mem, *s = d + nt * nb, *sl = s + nt * nb, *sh = sl + nt * nb;
    int32_t *sum = (int32_t *)(sh + nt * nb);
    *A = (pbs2p_q8_acts){(int8_t *)(sum + nt * nb), d, s, sl, sh, sum, cols, (int32_t)nb};
}

/* max |x| over a block, and whether every x is finite. */
static inline float block_amax(const float *x, int *finite) {
#ifdef __SSE2__
    const __m128 abs = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF)), zero = _mm_setzero_ps();
    __m128 m = zero, probe = zero;
    for (int j = 0; j < PBS2P_ACT_BLOCK; j += 4) {
        const __m128 v = _mm_loadu_ps(x + j);
        m = _mm_max_ps(_mm_and_ps(v, abs), m);
        probe = _mm_add_ps(probe, _mm_mul_ps(v, zero)); /* NaN once any x is a NaN or an infinity */
    }
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 1));
    *finite = _mm_movemask_ps(_mm_cmpeq_ps(probe, zero)) == 15;
    return _mm_cvtss_f32(m);
#else
    float amax = 0.0f, probe = 0.0f;
    for (int j = 0; j < PBS2P_ACT_BLOCK; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
        probe += x[j] * 0.0f; /* NaN once any x is a NaN or an infinity */
    }
    *finite = probe == 0.0f;
    return amax;
#endif
}

/* Codes of a finite block (id = 127 / max|x|, or 0) into q; returns their sum, and that of the first 16 in *first16.
 * The same IEEE operations either way: x * id, clamped to +-127, rounded by ROUND. */
static inline int32_t block_codes(const float *x, float id, int8_t *q, int32_t *first16) {
#ifdef __SSE2__
    const __m128 vid = _mm_set1_ps(id), hi = _mm_set1_ps(127.0f), lo = _mm_set1_ps(-127.0f), round = _mm_set1_ps(ROUND);
    __m128i c[8];
    for (int k = 0; k < 8; k++) {
        __m128 v = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(x + 4 * k), vid), lo), hi);
        c[k] = _mm_cvttps_epi32(_mm_sub_ps(_mm_add_ps(v, round), round));
    }
    const __m128i w0 = _mm_packs_epi32(c[0], c[1]), w1 = _mm_packs_epi32(c[2], c[3]);
    const __m128i w2 = _mm_packs_epi32(c[4], c[5]), w3 = _mm_packs_epi32(c[6], c[7]);
    _mm_storeu_si128((__m128i *)q, _mm_packs_epi16(w0, w1));
    _mm_storeu_si128((__m128i *)(q + 16), _mm_packs_epi16(w2, w3));
    __m128i h = _mm_madd_epi16(_mm_add_epi16(w0, w1), _mm_set1_epi16(1)); /* codes 0..15 */
    __m128i t = _mm_add_epi32(h, _mm_madd_epi16(_mm_add_epi16(w2, w3), _mm_set1_epi16(1)));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    *first16 = _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1)));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1)));
#else
    int32_t total = 0;
    for (int j = 0; j < PBS2P_ACT_BLOCK; j++) {
        float v = x[j] * id;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        v = (v + ROUND) - ROUND; /* to nearest, ties to even: |v| <= 127 < 2^22 */
        q[j] = (int8_t)(int32_t)v;
        total += q[j];
        if (j == 15) *first16 = total;
    }
    return total;
#endif
}

void pbs2p_q8_acts_quantize_ref(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A) {
    const size_t nb = (size_t)A->blocks;
    for (size_t b = t0 * nb; b < t1 * nb; b++) {
        const float *x = X + b * PBS2P_ACT_BLOCK; /* block b of token b / nb: rows of X are cols = 32 nb apart */
        int8_t *q = A->q + b * PBS2P_ACT_BLOCK;
        int finite;
        const float amax = block_amax(x, &finite);
        int32_t first16 = 0;
        if (!finite) { /* codes 0 and d NaN: every product with this block is NaN */
            memset(q, 0, PBS2P_ACT_BLOCK);
            A->d[b] = NAN;
            A->sum[b] = 0;
        } else {
            A->d[b] = amax / 127.0f;
            A->sum[b] = block_codes(x, amax > 0.0f ? 127.0f / amax : 0.0f, q, &first16);
        }
        A->s[b] = A->d[b] * (float)A->sum[b];
        A->sl[b] = A->d[b] * (float)first16;
        A->sh[b] = A->d[b] * (float)(A->sum[b] - first16);
    }
}

void pbs2p_q8_acts_quantize(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A) {
    pbs2p_kernels k; /* the callers have checked a variant is available; without one the reference runs */
    (pbs2p_kernel_current(&k) ? k.quantize : pbs2p_q8_acts_quantize_ref)(X, t0, t1, A);
}
