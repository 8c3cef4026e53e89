/* dense_ref.c — exact row decoding of the model's F16 / Q8_0 matrices and the scalar reference of their row dots. */
#include "internal.h"


static inline uint16_t load_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

void pbs2p_dense_row(const pbs2p_dense *W, int32_t r, float *out) {
    const uint8_t *p = W->data + (size_t)r * W->row_bytes;
    if (W->type == PBS2P_GGML_F16) {
        for (int32_t j = 0; j < W->cols; j++) out[j] = pbs2p_half_to_float(load_le16(p + 2 * (size_t)j));
        return;
    }
    for (int32_t b = 0; b < W->cols / PBS2P_Q8_0_BLOCK; b++, p += PBS2P_Q8_0_BYTES) {
        const float d = pbs2p_half_to_float(load_le16(p));
        for (int32_t j = 0; j < PBS2P_Q8_0_BLOCK; j++) out[b * PBS2P_Q8_0_BLOCK + j] = d * (float)(int8_t)p[2 + j];
    }
}

float pbs2p_dot_f32(const float *x, const float *y, int32_t n) {
    float acc[8] = {0};
    int32_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[k + j] * y[k + j];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
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
