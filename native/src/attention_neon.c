/* attention_neon.c — attention_impl.h for the neon variant: one query or a block, float32 or float16 cache. */
#include "internal.h"
#include <arm_neon.h>

/* float16 bits to float32, four at a time (AArch64 has the conversion in its base NEON). */
static inline void widen(const uint16_t *restrict src, float *restrict dst, int32_t n) {
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = pbs2p_half_to_float(src[i]);
}

#define PBS2P_ATTEND_F16
#include "attention_impl.h"

void pbs2p_attend_neon(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                       float scale, float *scores, float *out) {
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);
}

void pbs2p_attend_block_neon(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                             const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                             float scale, float *scores, size_t lds) {
    attend_block(nq, q, out, first, n, kt, ldk, v, ldv, hd, scale, scores, lds);
}

void pbs2p_attend_f16_neon(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt, const uint16_t *v,
                           size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale, float *scores,
                           size_t lds) {
    attend_f16(nq, q, out, kt, v, span_stride, first, n, hd, scale, scores, lds);
}

void pbs2p_widen_neon(const uint16_t *src, float *dst, int32_t n) { widen(src, dst, n); }
