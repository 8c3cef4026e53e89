/* attention_avx2.c — attention_impl.h compiled for the avx2 variant. */
#include "internal.h"
#include "attention_impl.h"

void pbs2p_attend_avx2(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                     float scale, float *scores, float *out) {
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);
}
