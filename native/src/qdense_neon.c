/* qdense_neon.c — NEON integer dense products on AArch64 (internal.h: "integer dense products"): the exact integer
 * dot of each activation block with widening multiplies (vmull_s8 / vmlal_s8, then pairwise adds into int32) and
 * one horizontal add; each block's float term as the reference forms it (fmaf where it fuses). */
#include "internal.h"

#include <arm_neon.h>
#include <math.h>

#include "dense_codes_neon.h"

static inline float half_at(const uint8_t *p) { return pbs2p_half_to_float((uint16_t)(p[0] | p[1] << 8)); }

/* Sum of w[0..16) * x[0..16) as int32: |products| <= 128 * 127, two of them per int16 lane. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t w, const int8_t *x) {
    const int8x16_t xv = vld1q_s8(x);
    const int16x8_t p = vmlal_s8(vmull_s8(vget_low_s8(w), vget_low_s8(xv)), vget_high_s8(w), vget_high_s8(xv));
    return vpadalq_s16(acc, p);
}

/* term_b of a row and one token's activations; not our two-level blocks (s16_row). */
static inline float term(int32_t type, const uint8_t *row, const pbs2p_q8_acts *A, int32_t b) {
    const int8_t *x = A->q + (size_t)b * PBS2P_ACT_BLOCK;
    int32x4_t acc = vdupq_n_s32(0);
    if (type == PBS2P_GGML_Q8_0) {
        const uint8_t *p = row + (size_t)b * PBS2P_Q8_0_BYTES;
        acc = dot16(dot16(acc, vld1q_s8((const int8_t *)p + 2), x), vld1q_s8((const int8_t *)p + 18), x + 16);
        return (half_at(p) * A->d[b]) * (float)vaddvq_s32(acc);
    }
    if (type == PBS2P_GGML_Q4_0) {
        const uint8_t *p = row + (size_t)b * PBS2P_Q4_0_BYTES;
        const uint8x16_t qs = vld1q_u8(p + 2);
        const int8x16_t eight = vdupq_n_s8(8);
        acc = dot16(acc, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(qs, vdupq_n_u8(15))), eight), x);
        acc = dot16(acc, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(qs, 4)), eight), x + 16);
        return (half_at(p) * A->d[b]) * (float)vaddvq_s32(acc);
    }
    const int q3 = type == PBS2P_DENSE_Q3_G64, h = b % 2;
    const uint8_t *p = row + pbs2p_our_block_at(type, (size_t)(b / 2));
    acc = dot16(acc, g64_codes(p + 4, q3 ? p + 20 : NULL, 2 * h), x);
    acc = dot16(acc, g64_codes(p + 4, q3 ? p + 20 : NULL, 2 * h + 1), x + 16);
    return (half_at(p) * A->d[b]) * (float)vaddvq_s32(acc) + half_at(p + 2) * A->s[b];
}

/* qdense_ref.c's s16_row: a row of our two-level blocks and one token. */
static inline float s16_row(int32_t type, const uint8_t *row, const pbs2p_q8_acts *A) {
    float accT[8] = {0}, accZ[8] = {0};
    for (int32_t b = 0; b < A->blocks; b++) {
        const int8_t *x = A->q + (size_t)b * PBS2P_ACT_BLOCK;
        const int h = b % 2;
        const uint8_t *p = row + pbs2p_our_block_at(type, (size_t)(b / 2));
        const int32_t I0 = vaddvq_s32(dot16(vdupq_n_s32(0), s16_codes(type, p, 2 * h), x));
        const int32_t I1 = vaddvq_s32(dot16(vdupq_n_s32(0), s16_codes(type, p, 2 * h + 1), x + 16));
        const uint8_t s0 = p[2 * h], s1 = p[2 * h + 1];
        const int32_t T = (s0 & 15) * I0 + (s1 & 15) * I1;
        accT[b % 8] = fmaf(A->d[b], (float)T, accT[b % 8]);
        accZ[b % 8] = fmaf((float)(s1 >> 4), A->sh[b], fmaf((float)(s0 >> 4), A->sl[b], accZ[b % 8]));
    }
    return (half_at(row) * pbs2p_total8(accT)) - (half_at(row + 2) * pbs2p_total8(accZ));
}

void pbs2p_qdense_rows_neon(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                            int32_t row0, int32_t row1) {
    for (int32_t r = row0; r < row1; r++) {
        const uint8_t *row = W->data + (size_t)r * W->row_bytes;
        for (size_t t = 0; t < n_tokens; t++) {
            const pbs2p_q8_acts At = pbs2p_q8_acts_at(A, t);
            if (pbs2p_dense_s16(W->type)) {
                Y[t * ldy + (size_t)r] = s16_row(W->type, row, &At);
                continue;
            }
            float acc[8] = {0};
            for (int32_t b = 0; b < At.blocks; b++) acc[b % 8] += term(W->type, row, &At, b);
            Y[t * ldy + (size_t)r] = pbs2p_total8(acc);
        }
    }
}
