/* model_math.c — the model runtime's per-row float32 math: norms, RoPE, activations, linears. */
#include "model_internal.h"

#include <math.h>
#include <stdlib.h>

#include "exp_approx.h"

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

/* Hugging Face's ACT2FN: silu, relu, gelu (exact, erf), gelu_new / gelu_pytorch_tanh (tanh approximation).
 * silu and the tanh of gelu_tanh go through exp_approx (tanh y = 1 - 2 / (e^2y + 1)), which the vectorizer turns into
 * SIMD code: libm's expf / tanhf are a call per element, and a 256-token prompt of Gemma-3-270M spent about a fifth of
 * its time in them (18 layers x 2048 x 256 calls). exp_approx is within about 1 ulp of e^x; near 0 the tanh form
 * cancels to an absolute error of a float's epsilon, which the 0.5 g factor makes smaller still. */
/* On x86-64 Linux the loops are compiled three times, for AVX-512, AVX2 and the baseline, and the loader picks the
 * widest this CPU runs (GCC's target_clones): a 256-token prompt of SmolLM2 spent 4.6 % of its samples here in
 * four-wide SSE2. The file is compiled without FP contraction, so every clone does the same IEEE operations. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void activate(float *hb, const float *up, size_t n, act_kind act) {
    const float k_tanh = 0.7978845608028654f; /* sqrt(2 / pi) */
    switch (act) { /* one loop per activation, so each vectorizes */
    case ACT_SILU:
        /* sigmoid as 1 - 1 / (e^x + 1), not 1 / (1 + e^-x): where exp_approx clamps, the vectorizer computes the
         * clamped lanes' result from a constant, and the second form's (x / 1.65e38) is subnormal for every |x| < 2,
         * each a microcode assist (6x slower than libm); the first form's constants are exactly 1 and 0 */
        for (size_t i = 0; i < n; i++) hb[i] = hb[i] * (1.0f - 1.0f / (exp_approx(hb[i]) + 1.0f));
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
            const float tanh_y = 1.0f - 2.0f / (exp_approx(2.0f * k_tanh * (g + 0.044715f * g * g * g)) + 1.0f);
            hb[i] = 0.5f * g * (1.0f + tanh_y);
        }
        break;
    }
    if (up)
        for (size_t i = 0; i < n; i++) hb[i] *= up[i];
}

static int plain_blocks(const linear *l) {
    return l->layer ? pbs2p_q8_plain_blocks(l->layer) : l->dense.type != PBS2P_GGML_F16;
}

pbs2p_status matmul_shared(const linear *const *ls, int n, const float *X, int32_t T, float *const *Y, pbs2p_pool *pool) {
    int shared = 0;
    for (int k = 0; k < n; k++) shared += plain_blocks(ls[k]);
    void *mem = NULL;
    pbs2p_q8_acts A;
    pbs2p_status st = PBS2P_OK;
    if (shared && (st = quantize_acts(pool, X, T, ls[0]->cols, &mem, &A)) != PBS2P_OK) return st;
    for (int k = 0; k < n && st == PBS2P_OK; k++) {
        const linear *l = ls[k];
        const size_t R = (size_t)l->rows, K = (size_t)l->cols;
        if (!plain_blocks(l)) /* F16, or a packed layer with its own blocks: quantized (or not) by its product */
            st = l->layer ? pbs2p_gemm_pool(l->layer, X, (size_t)T, (size_t)T * K, Y[k], (size_t)T * R, pool)
                          : dense_matmul(pool, &l->dense, X, T, Y[k]);
        else
            st = l->layer ? pbs2p_gemm_pool_q8(l->layer, &A, (size_t)T, Y[k], pool)
                          : dense_matmul_q8(pool, &l->dense, &A, T, Y[k]);
        if (st == PBS2P_OK && l->bias)
            for (int32_t t = 0; t < T; t++)
                for (size_t i = 0; i < R; i++) Y[k][(size_t)t * R + i] += l->bias[i];
    }
    free(mem);
    return st;
}

pbs2p_status matmul(const linear *l, const float *X, int32_t T, float *Y, pbs2p_pool *pool) {
    return matmul_shared(&l, 1, X, T, &Y, pool);
}
