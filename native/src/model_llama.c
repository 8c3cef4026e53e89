/* model_llama.c — the model runtime's Llama-layout part (Llama, Mistral, Qwen2, Gemma 3): its keys (RMSNorm, GQA,
 * RoPE, sliding window) and RoPE frequencies. Keys are read under general.architecture's prefix ("llama.", "qwen2.",
 * "gemma3."). Gemma 3 adds: the embedding times sqrt(D), QK-norm and a norm after each sublayer (tensors, read by
 * model_load.c), GELU-tanh GeGLU, attention.scale, and sliding / global layers (attention.sliding_window_pattern)
 * with their own RoPE base (rope.freq_base_swa). Its (1 + w) norm scales are stored as 1 + w. */
#include "model_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* docs/GGUF.md §3 llama, after the keys every architecture shares (model_load.c). */
pbs2p_status llama_read_config(const pbs2p_gguf *f, config *c) {
    char pairing[16], k[5][64];
    int present;
    pbs2p_status st;
    if ((st = key_str(f, "pbs2p.rope.pairing", pairing, sizeof pairing, &present)) != PBS2P_OK) return st;
    if (!present) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key pbs2p.rope.pairing");
    if (strcmp(pairing, "half") != 0)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "pbs2p.rope.pairing '%s' is not supported (only 'half')", pairing);
    if ((st = key_pos_float(f, arch_key(c, "attention.layer_norm_rms_epsilon", k[0], 64), 0, &c->eps)) != PBS2P_OK ||
        (st = key_int(f, arch_key(c, "attention.sliding_window", k[1], 64), 0, 0, MAX_CTX, &c->window)) != PBS2P_OK)
        return st;
    if (c->n_head % c->n_head_kv)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "head_count %d is not a multiple of head_count_kv %d", c->n_head,
                          c->n_head_kv);
    int32_t hd_default = c->n_embd % c->n_head ? -1 : c->n_embd / c->n_head, v_len, rot;
    if ((st = key_int(f, arch_key(c, "attention.key_length", k[2], 64), hd_default, 2, MAX_EMBD, &c->head_dim)) !=
            PBS2P_OK ||
        (st = key_int(f, arch_key(c, "attention.value_length", k[3], 64), c->head_dim, 1, MAX_EMBD, &v_len)) !=
            PBS2P_OK ||
        (st = key_int(f, arch_key(c, "rope.dimension_count", k[4], 64), c->head_dim, 1, MAX_EMBD, &rot)) != PBS2P_OK)
        return st;
    if (c->head_dim % 2) return pbs2p_fail(PBS2P_ERR_FORMAT, "head dimension %d must be even for RoPE", c->head_dim);
    if (v_len != c->head_dim || rot != c->head_dim)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "key_length %d, value_length %d and rope.dimension_count %d differ; "
                          "the model runtime needs them equal", c->head_dim, v_len, rot);
    if ((int64_t)c->n_head * c->head_dim > MAX_EMBD * 4)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "head_count x head dimension %d x %d is implausibly large", c->n_head,
                          c->head_dim);
    c->norm = NORM_RMS;
    c->norm_before = 1;
    c->gemma = strcmp(c->arch_name, "gemma3") == 0;
    c->act = c->gemma ? ACT_GELU_TANH : ACT_SILU;
    c->has_gate = 1;
    c->q_scale = 1.0f;
    c->embd_scale = c->gemma ? sqrtf((float)c->n_embd) : 1.0f; /* Hugging Face: float32(hidden_size ** 0.5) */
    c->pos_offset = 0;
    char scale_key[64];
    return key_pos_float(f, arch_key(c, "attention.scale", scale_key, sizeof scale_key),
                         1.0f / sqrtf((float)c->head_dim), &c->score_scale);
}

pbs2p_status llama_layer_windows(const pbs2p_gguf *f, const config *c, block *blocks) {
    char key[64];
    const void *data;
    uint64_t n;
    if (!c->gemma || !c->window) return PBS2P_OK;
    pbs2p_status st = pbs2p_gguf_get_arr(f, arch_key(c, "attention.sliding_window_pattern", key, sizeof key),
                                         PBS2P_GGUF_BOOL, &data, &n);
    if (st == PBS2P_ERR_NOT_FOUND)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "a gemma3 model with a sliding window lacks %s", key);
    if (st != PBS2P_OK) return st;
    if (n != (uint64_t)c->n_layer)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "%s has %" PRIu64 " entries for %d layers", key, n, c->n_layer);
    for (int32_t l = 0; l < c->n_layer; l++) blocks[l].window = ((const uint8_t *)data)[l] ? c->window : 0; /* 0, 1 */
    return PBS2P_OK;
}

/* inv_freq[d] = base^(-2d/hd) / (divisors ? divisors[d] : factor) for d < hd/2 (Hugging Face: 1 / base^(2d / hd) in
 * float32); *out NULL with an error on a divisor that is not finite and > 0 or no memory. */
static pbs2p_status rope_table(float base, float factor, const float *divisors, int32_t hd, float **out) {
    const int32_t half = hd / 2;
    float *inv_freq = malloc((size_t)half * sizeof *inv_freq);
    *out = NULL;
    if (!inv_freq) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for RoPE frequencies");
    for (int32_t d = 0; d < half; d++) {
        float dv = divisors ? divisors[d] : factor;
        if (!(isfinite(dv) && dv > 0)) {
            free(inv_freq);
            return pbs2p_fail(PBS2P_ERR_FORMAT, "rope_freqs.weight[%d] = %g must be finite and > 0", d, dv);
        }
        inv_freq[d] = (float)(1.0 / pow((double)base, (double)(2 * d) / (double)hd)) / dv;
    }
    *out = inv_freq;
    return PBS2P_OK;
}

/* RoPE angle per position of each rotated pair (d, d + hd/2): base^(-2d/hd), divided by the scaling; Gemma's sliding
 * layers get their own table from rope.freq_base_swa (unscaled), others *inv_freq_swa NULL. */
pbs2p_status llama_build_rope(const pbs2p_gguf *f, const config *c, float **out, float **inv_freq_swa) {
    const int32_t half = c->head_dim / 2;
    float base, base_swa, factor = 1.0f, *divisors = NULL;
    char type[32], k[4][64];
    int has_type;
    pbs2p_status st;
    *inv_freq_swa = NULL;
    if ((st = key_pos_float(f, arch_key(c, "rope.freq_base", k[0], 64), 10000.0f, &base)) != PBS2P_OK ||
        (st = key_str(f, arch_key(c, "rope.scaling.type", k[1], 64), type, sizeof type, &has_type)) != PBS2P_OK)
        return st;
    if (has_type && strcmp(type, "linear") == 0) {
        if ((st = key_pos_float(f, arch_key(c, "rope.scaling.factor", k[2], 64), 0, &factor)) != PBS2P_OK) return st;
    } else if (has_type && strcmp(type, "llama3") == 0) {
        if ((st = read_f32(f, "rope_freqs.weight", half, 1, &divisors)) != PBS2P_OK) return st;
    } else if (has_type && strcmp(type, "none") != 0) {
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "RoPE scaling '%s' is not supported (none, linear, llama3)", type);
    } else if ((st = read_f32(f, "rope_freqs.weight", half, 0, &divisors)) != PBS2P_OK) {
        return st; /* llama.cpp applies rope_freqs whenever the file has it */
    }
    st = rope_table(base, factor, divisors, c->head_dim, out);
    free(divisors);
    if (st != PBS2P_OK || !c->gemma) return st;
    if ((st = key_pos_float(f, arch_key(c, "rope.freq_base_swa", k[3], 64), 10000.0f, &base_swa)) != PBS2P_OK ||
        (st = rope_table(base_swa, 1.0f, NULL, c->head_dim, inv_freq_swa)) != PBS2P_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}
