/* dense_neon.c — NEON row dots of the F16 matrices (head, embedding) on AArch64: fp16 conversion, FMA. The other
 * dense types are integer products (qdense_neon.c). */
#include "internal.h"

#include <arm_neon.h>

/* Row r as float32 into out (exactly pbs2p_dense_row's values). */
static void decode_row(const pbs2p_dense *W, int32_t r, float *out) {
    const uint8_t *p = W->data + (size_t)r * W->row_bytes;
    const int32_t K = W->cols;
    int32_t j = 0;
    for (; j + 4 <= K; j += 4) {
        uint16x4_t h = vld1_u16((const uint16_t *)(const void *)(p + 2 * (size_t)j)); /* little-endian AArch64 */
        vst1q_f32(out + j, vcvt_f32_f16(vreinterpret_f16_u16(h)));
    }
    for (; j < K; j++) out[j] = pbs2p_half_to_float((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
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
