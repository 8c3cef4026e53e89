/* dense_ref.c — exact row decoding of the dense matrices (F16, Q8_0, Q4_0 and our q2/q3 blocks of 64, FORMAT.md
 * §10) and the scalar reference of their row dots. Compiled with -ffp-contract=off: (d * q) + m rounds twice. */
#include "internal.h"


static inline uint16_t load_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int pbs2p_dense_block(int32_t type, int32_t *values, size_t *bytes) {
    switch (type) {
    case PBS2P_GGML_F16: *values = 1; *bytes = 2; return 1;
    case PBS2P_GGML_Q8_0: *values = PBS2P_Q8_0_BLOCK; *bytes = PBS2P_Q8_0_BYTES; return 1;
    case PBS2P_GGML_Q4_0: *values = PBS2P_Q4_0_BLOCK; *bytes = PBS2P_Q4_0_BYTES; return 1;
    case PBS2P_DENSE_Q2_G64: *values = PBS2P_G64_BLOCK; *bytes = PBS2P_Q2_G64_BYTES; return 1;
    case PBS2P_DENSE_Q3_G64: *values = PBS2P_G64_BLOCK; *bytes = PBS2P_Q3_G64_BYTES; return 1;
    case PBS2P_DENSE_Q2_S16: *values = PBS2P_G64_BLOCK; *bytes = PBS2P_Q2_S16_BYTES; return 1;
    case PBS2P_DENSE_Q3_S16: *values = PBS2P_G64_BLOCK; *bytes = PBS2P_Q3_S16_BYTES; return 1;
    case PBS2P_DENSE_Q4_S16: *values = PBS2P_G64_BLOCK; *bytes = PBS2P_Q4_S16_BYTES; return 1;
    default: return 0;
    }
}

size_t pbs2p_dense_row_bytes(int32_t type, int32_t cols) {
    int32_t values;
    size_t bytes;
    if (!pbs2p_dense_block(type, &values, &bytes)) return 0;
    return (pbs2p_dense_s16(type) ? PBS2P_S16_HEADER : 0) + (size_t)cols / (size_t)values * bytes;
}

/* One block of 64 of ours into out[0..64). */
static void decode_g64(const uint8_t *p, int high_bit, float *out) {
    const float d = pbs2p_half_to_float(load_le16(p)), m = pbs2p_half_to_float(load_le16(p + 2));
    for (int j = 0; j < PBS2P_G64_BLOCK; j++) out[j] = d * (float)pbs2p_g64_code(p + 4, high_bit, j) + m;
}

void pbs2p_dense_row(const pbs2p_dense *W, int32_t r, float *out) {
    const uint8_t *p = W->data + (size_t)r * W->row_bytes;
    switch (W->type) {
    case PBS2P_GGML_F16:
        for (int32_t j = 0; j < W->cols; j++) out[j] = pbs2p_half_to_float(load_le16(p + 2 * (size_t)j));
        return;
    case PBS2P_GGML_Q8_0:
        for (int32_t b = 0; b < W->cols / PBS2P_Q8_0_BLOCK; b++, p += PBS2P_Q8_0_BYTES) {
            const float d = pbs2p_half_to_float(load_le16(p));
            for (int32_t j = 0; j < PBS2P_Q8_0_BLOCK; j++) out[b * PBS2P_Q8_0_BLOCK + j] = d * (float)(int8_t)p[2 + j];
        }
        return;
    case PBS2P_GGML_Q4_0:
        for (int32_t b = 0; b < W->cols / PBS2P_Q4_0_BLOCK; b++, p += PBS2P_Q4_0_BYTES) {
            const float d = pbs2p_half_to_float(load_le16(p));
            float *o = out + b * PBS2P_Q4_0_BLOCK;
            for (int j = 0; j < 16; j++) {
                o[j] = d * (float)((p[2 + j] & 15) - 8);
                o[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        return;
    case PBS2P_DENSE_Q2_S16:
    case PBS2P_DENSE_Q3_S16:
    case PBS2P_DENSE_Q4_S16: {
        const float D = pbs2p_half_to_float(load_le16(p)), M = pbs2p_half_to_float(load_le16(p + 2));
        for (int32_t b = 0; b < W->cols / PBS2P_G64_BLOCK; b++) {
            const uint8_t *blk = p + pbs2p_our_block_at(W->type, (size_t)b);
            for (int j = 0; j < PBS2P_G64_BLOCK; j++) {
                const float d = D * (float)(blk[j >> 4] & 15), m = -(M * (float)(blk[j >> 4] >> 4));
                out[b * PBS2P_G64_BLOCK + j] = d * (float)pbs2p_s16_code(W->type, blk, j) + m;
            }
        }
        return;
    }
    default: { /* ours */
        const int q3 = W->type == PBS2P_DENSE_Q3_G64;
        for (int32_t b = 0; b < W->cols / PBS2P_G64_BLOCK; b++)
            decode_g64(p + pbs2p_our_block_at(W->type, (size_t)b), q3, out + b * PBS2P_G64_BLOCK);
    }
    }
}

float pbs2p_dot_f32(const float *x, const float *y, int32_t n) {
    float acc[8] = {0};
    int32_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[k + j] * y[k + j];
    float sum = pbs2p_total8(acc);
    for (; k < n; k++) sum += x[k] * y[k];
    return sum;
}

void pbs2p_dense_rows_ref(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                          float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch) {
    for (int32_t r = row0; r < row1; r++) {
        pbs2p_dense_row(W, r, scratch);
        for (size_t t = 0; t < n_tokens; t++) Y[t * ldy + (size_t)r] = pbs2p_dot_f32(X + t * ldx, scratch, W->cols);
    }
}
