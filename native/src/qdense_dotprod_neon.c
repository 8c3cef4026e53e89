/* qdense_dotprod_neon.c — NEON integer dense products with the Armv8.2 dot product (sdot; Raspberry Pi 5, Apple M,
 * Graviton 2+), the neon variant's where the CPU has it (internal.h: "integer dense products"). As in
 * qdense_avx512.c, the lanes of a vector are rows, four of them: the codes of one activation block of four rows are
 * transposed so that vector j holds codes 4j .. 4j + 3 of each row, and vdotq_laneq_s32 multiplies them by the
 * token's codes 4j .. 4j + 3 (one lane of its activation vector): eight sdot leave each row's exact integer dot I_b
 * in its own lane, with no horizontal add. The transposed codes of a block serve up to TOKENS tokens; each keeps the
 * reference's eight sums acc[b % 8] per row (our two-level blocks also accZ, as qdense_ref.c's s16_row), so every
 * output has the reference's bits. Built with -ffp-contract=off.
 * All codes are signed bytes here: Q4_0's as q - 8, our blocks' (0..7) as they are. */
#include "internal.h"

#ifdef PBS2P_HAVE_NEON_DOTPROD
#include <arm_neon.h>

#include "dense_codes_neon.h"

#define ROWS 4
#define TOKENS 8
#define INLINE static inline __attribute__((always_inline))

static inline float half_at(const uint8_t *p) { return pbs2p_half_to_float((uint16_t)(p[0] | p[1] << 8)); }

/* The 32 codes of activation block b of one row: lo = codes 0..15, hi = 16..31; *dw, *mw its scale and min (our
 * two-level blocks: the row's D and M, and *sub its sc[2h] | sc[2h + 1] << 8). */
INLINE void row_codes(int32_t type, const uint8_t *row, int32_t b, int8x16_t *lo, int8x16_t *hi, float *dw, float *mw,
                      int32_t *sub) {
    if (pbs2p_dense_s16(type)) {
        const int h = b % 2;
        const uint8_t *p = row + pbs2p_our_block_at(type, (size_t)(b / 2));
        *lo = s16_codes(type, p, 2 * h);
        *hi = s16_codes(type, p, 2 * h + 1);
        *dw = half_at(row);
        *mw = half_at(row + 2);
        *sub = p[2 * h] | p[2 * h + 1] << 8;
        return;
    }
    if (type == PBS2P_GGML_Q8_0) {
        const uint8_t *p = row + (size_t)b * PBS2P_Q8_0_BYTES;
        *lo = vld1q_s8((const int8_t *)p + 2);
        *hi = vld1q_s8((const int8_t *)p + 18);
        *dw = *mw = half_at(p);
        return;
    }
    if (type == PBS2P_GGML_Q4_0) {
        const uint8_t *p = row + (size_t)b * PBS2P_Q4_0_BYTES;
        const uint8x16_t qs = vld1q_u8(p + 2);
        const int8x16_t eight = vdupq_n_s8(8);
        *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(qs, vdupq_n_u8(15))), eight);
        *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(qs, 4)), eight);
        *dw = *mw = half_at(p);
        return;
    }
    const int q3 = type == PBS2P_DENSE_Q3_G64, h = b % 2;
    const uint8_t *p = row + pbs2p_our_block_at(type, (size_t)(b / 2));
    *lo = g64_codes(p + 4, q3 ? p + 20 : NULL, 2 * h);
    *hi = g64_codes(p + 4, q3 ? p + 20 : NULL, 2 * h + 1);
    *dw = half_at(p);
    *mw = half_at(p + 2);
}

/* 4 x 4 transpose of 32-bit lanes: out[j] lane k = in[k] lane j. */
INLINE void transpose4(const int8x16_t in[4], int8x16_t out[4]) {
    const int32x4_t a = vreinterpretq_s32_s8(in[0]), b = vreinterpretq_s32_s8(in[1]);
    const int32x4_t c = vreinterpretq_s32_s8(in[2]), d = vreinterpretq_s32_s8(in[3]);
    const int64x2_t ab0 = vreinterpretq_s64_s32(vtrn1q_s32(a, b)), ab1 = vreinterpretq_s64_s32(vtrn2q_s32(a, b));
    const int64x2_t cd0 = vreinterpretq_s64_s32(vtrn1q_s32(c, d)), cd1 = vreinterpretq_s64_s32(vtrn2q_s32(c, d));
    out[0] = vreinterpretq_s8_s64(vtrn1q_s64(ab0, cd0));
    out[1] = vreinterpretq_s8_s64(vtrn1q_s64(ab1, cd1));
    out[2] = vreinterpretq_s8_s64(vtrn2q_s64(ab0, cd0));
    out[3] = vreinterpretq_s8_s64(vtrn2q_s64(ab1, cd1));
}

INLINE float32x4_t total8(const float32x4_t a[8]) {
    return vaddq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])),
                     vaddq_f32(vaddq_f32(a[4], a[5]), vaddq_f32(a[6], a[7])));
}

/* Rows r .. r + n - 1 (n <= 4) for tokens t0 .. t0 + nt - 1 (nt <= TOKENS). */
INLINE void group_tokens(int32_t type, const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t t0, int nt, float *Y,
                         size_t ldy, int32_t r, int n) {
    const int mins = type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64;
    const int s16 = pbs2p_dense_s16(type);
    float32x4_t acc[TOKENS][8], accZ[s16 ? TOKENS : 1][8]; /* our two-level blocks: T in acc, the min term in accZ */
    float dw[4] = {0}, mw[4] = {0};
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < 8; k++) acc[t][k] = accZ[s16 ? t : 0][k] = vdupq_n_f32(0.0f);
    for (int32_t b = 0; b < A->blocks; b++) {
        int8x16_t lo[4], hi[4], w[8];
        int32_t sub[4] = {0};
        for (int k = 0; k < ROWS; k++) {
            if (k < n) {
                row_codes(type, W->data + (size_t)(r + k) * W->row_bytes, b, &lo[k], &hi[k], &dw[k], &mw[k], &sub[k]);
            } else { /* past the group's rows: codes 0, scale 0, stored nowhere */
                lo[k] = hi[k] = vdupq_n_s8(0);
            }
        }
        transpose4(lo, w);
        transpose4(hi, w + 4);
        const float32x4_t dwv = vld1q_f32(dw), mwv = vld1q_f32(mw);
        const int32x4_t subv = vld1q_s32(sub), nib = vdupq_n_s32(15);
        const int32x4_t sc0 = vandq_s32(subv, nib), mc0 = vandq_s32(vshrq_n_s32(subv, 4), nib);
        const int32x4_t sc1 = vandq_s32(vshrq_n_s32(subv, 8), nib);
        const float32x4_t mc0f = vcvtq_f32_s32(mc0), mc1f = vcvtq_f32_s32(vshrq_n_s32(subv, 12));
        for (int t = 0; t < nt; t++) {
            const size_t xb = (t0 + (size_t)t) * (size_t)A->blocks + (size_t)b;
            const int8_t *x = A->q + (t0 + (size_t)t) * (size_t)A->cols + (size_t)b * PBS2P_ACT_BLOCK;
            const int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
            int32x4_t i0 = vdupq_n_s32(0), i1 = vdupq_n_s32(0); /* two chains of four */
            i0 = vdotq_laneq_s32(i0, w[0], x0, 0);
            i1 = vdotq_laneq_s32(i1, w[4], x1, 0);
            i0 = vdotq_laneq_s32(i0, w[1], x0, 1);
            i1 = vdotq_laneq_s32(i1, w[5], x1, 1);
            i0 = vdotq_laneq_s32(i0, w[2], x0, 2);
            i1 = vdotq_laneq_s32(i1, w[6], x1, 2);
            i0 = vdotq_laneq_s32(i0, w[3], x0, 3);
            i1 = vdotq_laneq_s32(i1, w[7], x1, 3);
            if (s16) { /* qdense_ref.c's s16_row: T = sc0 I0 + sc1 I1 (sc * code overflows a signed byte) */
                const int32x4_t T = vmlaq_s32(vmulq_s32(sc0, i0), sc1, i1);
                acc[t][b % 8] = vfmaq_n_f32(acc[t][b % 8], vcvtq_f32_s32(T), A->d[xb]);
                accZ[t][b % 8] = vfmaq_n_f32(vfmaq_n_f32(accZ[t][b % 8], mc0f, A->sl[xb]), mc1f, A->sh[xb]);
                continue;
            }
            float32x4_t term = vmulq_f32(vmulq_n_f32(dwv, A->d[xb]), vcvtq_f32_s32(vaddq_s32(i0, i1)));
            if (mins) term = vaddq_f32(term, vmulq_n_f32(mwv, A->s[xb]));
            acc[t][b % 8] = vaddq_f32(acc[t][b % 8], term);
        }
    }
    for (int t = 0; t < nt; t++) {
        float32x4_t y = total8(acc[t]);
        if (s16) y = vsubq_f32(vmulq_f32(vld1q_f32(dw), y), vmulq_f32(vld1q_f32(mw), total8(accZ[t])));
        float out[4];
        vst1q_f32(out, y);
        for (int k = 0; k < n; k++) Y[(t0 + (size_t)t) * ldy + (size_t)(r + k)] = out[k];
    }
}

#include "qdense_lanes.h"

void pbs2p_qdense_rows_dotprod(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                               int32_t row0, int32_t row1) {
    lanes_rows(W, A, n_tokens, Y, ldy, row0, row1);
}
#endif
