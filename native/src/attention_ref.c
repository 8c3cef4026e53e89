/* attention_ref.c — attention_impl.h compiled for the ref variant. */
#include "internal.h"
#include "attention_impl.h"

void pbs2p_attend_ref(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                     float scale, float *scores, float *out) {
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);
}
