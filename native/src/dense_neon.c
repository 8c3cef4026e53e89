/* dense_neon.c — NEON row dots of the dense matrices (head, embedding, grid-tier linears) on AArch64: fp16
 * conversion, FMA. Built with -ffp-contract=off: a decoded
 * weight equals the reference's bit for bit. */
#include "internal.h"

#include <arm_neon.h>

/* out[0..16) = d * (codes - offset) [+ m] for 16 byte codes. */
static inline void store16(float *out, uint8x16_t codes, float d, float m, int offset, int has_m) {
    const int16x8_t lo = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(codes))), vdupq_n_s16((int16_t)offset));
    const int16x8_t hi = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(codes))), vdupq_n_s16((int16_t)offset));
    const int32x4_t q[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_s16(vget_high_s16(lo)), vmovl_s16(vget_low_s16(hi)),
                            vmovl_s16(vget_high_s16(hi))};
    for (int e = 0; e < 4; e++) {
        float32x4_t v = vmulq_n_f32(vcvtq_f32_s32(q[e]), d);
        if (has_m) v = vaddq_f32(v, vdupq_n_f32(m));
        vst1q_f32(out + 4 * e, v);
    }
}

static inline float half_at(const uint8_t *p) { return pbs2p_half_to_float((uint16_t)(p[0] | p[1] << 8)); }

/* Q4_0: codes 16h .. 16h + 15 of a block whose qs are at p (h = 0: low nibbles, 1: high nibbles). */
static inline uint8x16_t q4_0_codes(const uint8_t *qs, int h) {
    const uint8x16_t v = vld1q_u8(qs);
    return h ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(15));
}

/* Codes 16s .. 16s + 15 of one of our blocks of 64; qh NULL for q2_g64. */
static inline uint8x16_t g64_codes(const uint8_t *qs, const uint8_t *qh, int s) {
    const uint8x16_t v = vld1q_u8(qs);
    uint8x16_t q = vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)(-2 * s))), vdupq_n_u8(3));
    if (qh) {
        static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t bytes = vcombine_u8(vdup_n_u8(qh[2 * s]), vdup_n_u8(qh[2 * s + 1]));
        q = vorrq_u8(q, vandq_u8(vtstq_u8(bytes, vld1q_u8(bits)), vdupq_n_u8(4)));
    }
    return q;
}

#include "dense_tiers.h"

/* Row r as float32 into out (exactly pbs2p_dense_row's values). */
static void decode_row(const pbs2p_dense *W, int32_t r, float *out) {
    const uint8_t *p = W->data + (size_t)r * W->row_bytes;
    const int32_t K = W->cols;
    if (W->type == PBS2P_GGML_F16) {
        int32_t j = 0;
        for (; j + 4 <= K; j += 4) {
            uint16x4_t h = vld1_u16((const uint16_t *)(const void *)(p + 2 * (size_t)j)); /* little-endian AArch64 */
            vst1q_f32(out + j, vcvt_f32_f16(vreinterpret_f16_u16(h)));
        }
        for (; j < K; j++) out[j] = pbs2p_half_to_float((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
        return;
    }
    if (decode_tier_row(W, p, out)) return;
    for (int32_t b = 0; b < K / PBS2P_Q8_0_BLOCK; b++, p += PBS2P_Q8_0_BYTES) {
        const float d = pbs2p_half_to_float((uint16_t)(p[0] | p[1] << 8));
        for (int e = 0; e < 2; e++) {
            const int8x16_t q = vld1q_s8((const int8_t *)(p + 2 + 16 * e));
            const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_s8(vget_high_s8(q));
            float *o = out + b * PBS2P_Q8_0_BLOCK + 16 * e;
            vst1q_f32(o, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
            vst1q_f32(o + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo))), d));
            vst1q_f32(o + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
            vst1q_f32(o + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi))), d));
        }
    }
}

/* Two 4-lane running sums (k = 8i + lane, 8i + 4 + lane), one reduction, the tail in order. */
static float dot(const float *x, const float *y, int32_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int32_t k = 0;
    for (; k + 8 <= n; k += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + k), vld1q_f32(y + k));
        a1 = vfmaq_f32(a1, vld1q_f32(x + k + 4), vld1q_f32(y + k + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; k < n; k++) sum += x[k] * y[k];
    return sum;
}

/* TILE_R rows (decoded, K apart) x TILE_T tokens: each of the 12 sums formed exactly as dot() forms it (a0 takes
 * columns 8i..8i+3, a1 8i+4..8i+7, one reduction of a0 + a1, the tail in order). */
#define TILE_R 4
#define TILE_T 3
static void tile(const float *w, int32_t K, const float *x, size_t ldx, float *y) {
    float32x4_t a0[TILE_R][TILE_T], a1[TILE_R][TILE_T];
    for (int i = 0; i < TILE_R; i++)
        for (int t = 0; t < TILE_T; t++) a0[i][t] = a1[i][t] = vdupq_n_f32(0.0f);
    int32_t k = 0;
    for (; k + 8 <= K; k += 8) {
        float32x4_t w0[TILE_R], w1[TILE_R];
        for (int i = 0; i < TILE_R; i++) {
            w0[i] = vld1q_f32(w + (size_t)i * K + k);
            w1[i] = vld1q_f32(w + (size_t)i * K + k + 4);
        }
        for (int t = 0; t < TILE_T; t++) {
            const float32x4_t x0 = vld1q_f32(x + t * ldx + k), x1 = vld1q_f32(x + t * ldx + k + 4);
            for (int i = 0; i < TILE_R; i++) {
                a0[i][t] = vfmaq_f32(a0[i][t], x0, w0[i]);
                a1[i][t] = vfmaq_f32(a1[i][t], x1, w1[i]);
            }
        }
    }
    for (int i = 0; i < TILE_R; i++)
        for (int t = 0; t < TILE_T; t++) {
            float sum = vaddvq_f32(vaddq_f32(a0[i][t], a1[i][t]));
            for (int32_t j = k; j < K; j++) sum += x[t * ldx + j] * w[(size_t)i * K + j];
            y[i * TILE_T + t] = sum;
        }
}

#include "dense_tile.h"

void pbs2p_dense_rows_neon(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                           float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch) {
    dense_rows(W, X, n_tokens, ldx, Y, ldy, row0, row1, scratch);
}
