/* acts_q8_avx512.c — acts_q8.c's quantization with AVX-512 (F, BW): a block of 32 in two registers, the same IEEE
 * operations on each value (x * id, clamped to +-127, rounded by adding and subtracting 1.5 * 2^23) and the same
 * scalar d, id, d * sum and d * half sums, so the same codes, scales and sums as the reference's, bit for bit (test_dense). */
#include "internal.h"

#ifdef PBS2P_HAVE_AVX512 /* else an empty unit */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define ROUND 12582912.0f

void pbs2p_q8_acts_quantize_avx512(const float *X, size_t t0, size_t t1, const pbs2p_q8_acts *A) {
    const size_t nb = (size_t)A->blocks;
    const __m512 zero = _mm512_setzero_ps(), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    const __m512 round = _mm512_set1_ps(ROUND);
    for (size_t b = t0 * nb; b < t1 * nb; b++) {
        const float *x = X + b * PBS2P_ACT_BLOCK; /* block b of token b / nb */
        int8_t *q = A->q + b * PBS2P_ACT_BLOCK;
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        /* NaN in a lane once any x is a NaN or an infinity */
        const __m512 probe = _mm512_add_ps(_mm512_mul_ps(v0, zero), _mm512_mul_ps(v1, zero));
        if (_mm512_cmp_ps_mask(probe, zero, _CMP_EQ_OQ) != 0xFFFF) { /* codes 0 and d NaN, as the reference */
            memset(q, 0, PBS2P_ACT_BLOCK);
            A->d[b] = NAN;
            A->sum[b] = 0;
            A->s[b] = A->sl[b] = A->sh[b] = NAN;
            continue;
        }
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        const __m512i c0 = _mm512_cvttps_epi32(_mm512_sub_ps(
            _mm512_add_ps(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, id), lo), hi), round), round));
        const __m512i c1 = _mm512_cvttps_epi32(_mm512_sub_ps(
            _mm512_add_ps(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, id), lo), hi), round), round));
        _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(c0)); /* |code| <= 127: the low byte is the code */
        _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(c1));
        A->d[b] = amax / 127.0f;
        const int32_t first16 = _mm512_reduce_add_epi32(c0);
        A->sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(c0, c1));
        A->s[b] = A->d[b] * (float)A->sum[b];
        A->sl[b] = A->d[b] * (float)first16;
        A->sh[b] = A->d[b] * (float)(A->sum[b] - first16);
    }
}
#endif
