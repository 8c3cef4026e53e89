/* model_math.c — the model runtime's per-row float32 math: dequantized rows, norms, RoPE, activations, linears. */
#include "model_internal.h"

#include <math.h>
#include <string.h>

/* float16 bits -> float32, exact for every value like pbs2p_half_to_float, but branch-free (selects and an
 * int -> float conversion for subnormals, no denormal arithmetic) so the row loops below vectorize. */
static inline float half_to_float(uint32_t h) {
    const uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    float sub = (float)(int32_t)man * 0x1p-24f; /* e == 0: man * 2^-24, exact */
    uint32_t sub_bits;
    memcpy(&sub_bits, &sub, 4);
    const uint32_t is_sub = 0u - (uint32_t)(e == 0), is_inf = 0u - (uint32_t)(e == 0x1F); /* all-ones masks */
    const uint32_t normal = ((e + 112u) << 23) | (man << 13), inf_nan = 0x7F800000u | (man << 13);
    const uint32_t bits = sign | (sub_bits & is_sub) | (inf_nan & is_inf) | (normal & ~(is_sub | is_inf));
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Little-endian u16 at p (any alignment). */
static inline uint32_t load_u16(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
#endif
}

void dequant_row(const row_matrix *w, int32_t r, int32_t D, float *out) {
    const uint8_t *p = w->data + (size_t)r * w->row_bytes;
    if (w->type == PBS2P_GGML_F16) {
        for (int32_t j = 0; j < D; j++) out[j] = half_to_float(load_u16(p + 2 * (size_t)j));
        return;
    }
    for (int32_t b = 0; b < D / Q8_0_BLOCK; b++, p += Q8_0_BYTES) {
        float d = half_to_float(load_u16(p));
        for (int32_t j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * (float)(int8_t)p[2 + j];
    }
}

void add_row(const row_matrix *w, int32_t r, int32_t D, float *out) {
    const uint8_t *p = w->data + (size_t)r * w->row_bytes;
    if (w->type == PBS2P_GGML_F16) {
        for (int32_t j = 0; j < D; j++) out[j] += half_to_float(load_u16(p + 2 * (size_t)j));
        return;
    }
    for (int32_t b = 0; b < D / Q8_0_BLOCK; b++, p += Q8_0_BYTES) {
        float d = half_to_float(load_u16(p));
        for (int32_t j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] += d * (float)(int8_t)p[2 + j];
    }
}

/* RMSNorm: x / sqrt(mean(x^2) + eps) * weight (LlamaRMSNorm).
 * LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias, var biased, two passes (torch.nn.LayerNorm). */
void norm_row(float *out, const float *x, const float *weight, const float *bias, int32_t D, norm_kind kind,
              float eps) {
    if (kind == NORM_RMS) {
        float ss = 0.0f;
        for (int32_t j = 0; j < D; j++) ss += x[j] * x[j];
        float scale = 1.0f / sqrtf(ss / (float)D + eps);
        for (int32_t j = 0; j < D; j++) out[j] = weight[j] * (x[j] * scale);
        return;
    }
    float sum = 0.0f, ss = 0.0f;
    for (int32_t j = 0; j < D; j++) sum += x[j];
    const float mean = sum / (float)D;
    for (int32_t j = 0; j < D; j++) ss += (x[j] - mean) * (x[j] - mean);
    const float scale = 1.0f / sqrtf(ss / (float)D + eps);
    for (int32_t j = 0; j < D; j++) out[j] = (x[j] - mean) * scale * weight[j] + bias[j];
}

/* The pair (d, d + hd/2) turns by pos * inv_freq[d] (Hugging Face order: q * cos + rotate_half(q) * sin). */
void rope(float *vec, int32_t n_heads, int32_t hd, int32_t pos, const float *inv_freq) {
    const int32_t half = hd / 2;
    for (int32_t d = 0; d < half; d++) {
        float angle = (float)pos * inv_freq[d];
        float c = cosf(angle), s = sinf(angle);
        for (int32_t h = 0; h < n_heads; h++) {
            float *x = vec + (size_t)h * hd;
            float x1 = x[d], x2 = x[d + half];
            x[d] = x1 * c - x2 * s;
            x[d + half] = x2 * c + x1 * s;
        }
    }
}

/* Hugging Face's ACT2FN: silu, relu, gelu (exact, erf), gelu_new / gelu_pytorch_tanh (tanh approximation). */
void activate(float *hb, const float *up, size_t n, act_kind act) {
    const float k_tanh = 0.7978845608028654f; /* sqrt(2 / pi) */
    switch (act) { /* one loop per activation, so each vectorizes */
    case ACT_SILU:
        for (size_t i = 0; i < n; i++) hb[i] = hb[i] / (1.0f + expf(-hb[i]));
        break;
    case ACT_RELU:
        for (size_t i = 0; i < n; i++) hb[i] = hb[i] > 0.0f ? hb[i] : 0.0f;
        break;
    case ACT_GELU:
        for (size_t i = 0; i < n; i++) hb[i] = 0.5f * hb[i] * (1.0f + erff(hb[i] * 0.70710678118654752f));
        break;
    case ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            const float g = hb[i];
            hb[i] = 0.5f * g * (1.0f + tanhf(k_tanh * (g + 0.044715f * g * g * g)));
        }
        break;
    }
    if (up)
        for (size_t i = 0; i < n; i++) hb[i] *= up[i];
}

pbs2p_status matmul(const linear *l, const float *X, int32_t T, float *Y, pbs2p_pool *pool) {
    const size_t R = (size_t)l->rows, K = (size_t)l->cols;
    pbs2p_status st = pbs2p_gemm_pool(l->layer, X, (size_t)T, (size_t)T * K, Y, (size_t)T * R, pool);
    if (st != PBS2P_OK || !l->bias) return st;
    for (int32_t t = 0; t < T; t++)
        for (size_t i = 0; i < R; i++) Y[(size_t)t * R + i] += l->bias[i];
    return PBS2P_OK;
}
