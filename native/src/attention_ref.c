/* attention_ref.c — attention_impl.h for the ref variant: one query or a block, float32 or float16 cache. */
#include "internal.h"

/* float16 bits to float32, one at a time (the reference conversion, exact). */
static inline void widen(const uint16_t *restrict src, float *restrict dst, int32_t n) {
    for (int32_t i = 0; i < n; i++) dst[i] = pbs2p_half_to_float(src[i]);
}

/* no fused multiply-add assumed (x86-64's baseline has none: fmaf would be a libm call per element) */
#define ATT_FMA(a, b, c) ((a) * (b) + (c))
#define PBS2P_ATTEND_F16
#include "attention_impl.h"

void pbs2p_attend_ref(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                      float scale, float *scores, float *out) {
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);
}

void pbs2p_attend_block_ref(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                            const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                            float scale, float *scores, size_t lds) {
    attend_block(nq, q, out, first, n, kt, ldk, v, ldv, hd, scale, scores, lds);
}

void pbs2p_attend_f16_ref(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt, const uint16_t *v,
                          size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale, float *scores,
                          size_t lds) {
    attend_f16(nq, q, out, kt, v, span_stride, first, n, hd, scale, scores, lds);
}

void pbs2p_widen_ref(const uint16_t *src, float *dst, int32_t n) { widen(src, dst, n); }
