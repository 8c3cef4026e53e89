/* attention_avx2.c — attention_impl.h for the avx2 variant: one query or a block, float32 or float16 cache. */
#include "internal.h"
#include <immintrin.h>

/* float16 bits to float32, eight at a time (F16C, which the avx2 variant requires). */
static inline void widen(const uint16_t *restrict src, float *restrict dst, int32_t n) {
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

#define PBS2P_ATTEND_F16
#include "attention_impl.h"

void pbs2p_attend_avx2(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                       float scale, float *scores, float *out) {
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);
}

void pbs2p_attend_block_avx2(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                             const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                             float scale, float *scores, size_t lds) {
    attend_block(nq, q, out, first, n, kt, ldk, v, ldv, hd, scale, scores, lds);
}

void pbs2p_attend_f16_avx2(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt, const uint16_t *v,
                           size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale, float *scores,
                           size_t lds) {
    attend_f16(nq, q, out, kt, v, span_stride, first, n, hd, scale, scores, lds);
}

void pbs2p_widen_avx2(const uint16_t *src, float *dst, int32_t n) { widen(src, dst, n); }
