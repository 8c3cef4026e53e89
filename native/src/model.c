/* model.c — the Llama-family transformer forward with a KV cache, run from a pbs2p GGUF file (docs/GGUF.md). */
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHOWN 80                        /* bytes of a name quoted in an error message */
#define MAX_EMBD (1 << 16)              /* plausibility caps on hyper-parameters: also keep every */
#define MAX_FF (1 << 20)                /* size product below in range of size_t on 64-bit hosts  */
#define MAX_LAYER (1 << 12)
#define MAX_HEAD (1 << 12)
#define MAX_VOCAB (1 << 24)
#define MAX_CTX (1 << 24)
#define Q8_0_BLOCK 32                   /* ggml Q8_0: (float16 d, int8 qs[32]) per 32 values, value = d * q */
#define Q8_0_BYTES 34

/* ----------------------------------------------------------------------------------------------------
 * Model structs: hyper-parameters, weights, KV cache */

typedef struct config {
    int32_t n_vocab;    /* V */
    int32_t n_embd;     /* D */
    int32_t n_ff;       /* F */
    int32_t n_layer;    /* L */
    int32_t n_head;     /* H */
    int32_t n_head_kv;  /* Hkv, divides H */
    int32_t head_dim;   /* hd, even */
    int32_t n_ctx_train;
    float eps;          /* RMSNorm epsilon */
} config;

/* A compressed linear: y (rows,) = W_hat x (cols,) [+ bias]. */
typedef struct linear {
    pbs2p_layer *layer; /* prepared, independent of the file */
    float *bias;        /* (rows,) or NULL */
    int32_t rows, cols;
} linear;

enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, N_LIN };
static const char *const LIN_NAMES[N_LIN] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                             "ffn_down"};

typedef struct block {
    float *attn_norm;   /* (D,) */
    float *ffn_norm;    /* (D,) */
    linear lin[N_LIN];  /* q (H*hd, D), k (Hkv*hd, D), v (Hkv*hd, D), o (D, H*hd), gate/up (F, D), down (D, F) */
} block;

/* A (rows, D) matrix of F16 or Q8_0 rows inside the file mapping, dequantized one row at a time. */
typedef struct row_matrix {
    const uint8_t *data;
    int32_t type;       /* PBS2P_GGML_F16 or PBS2P_GGML_Q8_0 */
    size_t row_bytes;
    int32_t rows;
} row_matrix;

typedef struct weights {
    row_matrix token_embd; /* (V, D) */
    row_matrix output;     /* (V, D): output.weight, or token_embd when tied */
    int tied;
    float *output_norm;    /* (D,) */
    block *blocks;         /* (L,) */
    float *inv_freq;       /* (hd/2,) RoPE angle per position, radians, scaling included */
} weights;

typedef struct kv_cache {
    float *key;         /* (L, n_ctx, Hkv*hd) */
    float *value;       /* (L, n_ctx, Hkv*hd) */
} kv_cache;

struct pbs2p_model {
    pbs2p_gguf *file;   /* keeps token_embd / output mapped */
    config c;
    weights w;
    kv_cache kv;
    int32_t n_ctx, n_threads, n_cached;
};

/* ----------------------------------------------------------------------------------------------------
 * Reading keys and tensors */

/* u32 key as int32 in [lo, hi]; absent: `fallback` if >= 0, else PBS2P_ERR_FORMAT. */
static pbs2p_status key_int(const pbs2p_gguf *f, const char *key, int64_t fallback, int32_t lo, int32_t hi,
                            int32_t *out) {
    uint32_t v;
    pbs2p_status st = pbs2p_gguf_get_u32(f, key, &v);
    if (st == PBS2P_ERR_NOT_FOUND && fallback >= 0) {
        *out = (int32_t)fallback;
        return PBS2P_OK;
    }
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key %s", key);
    if (st != PBS2P_OK) return pbs2p_fail(st, "key %s: %s", key, pbs2p_last_error());
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "key %s = %" PRIu32 " is outside %d..%d", key, v, lo, hi);
    *out = (int32_t)v;
    return PBS2P_OK;
}

/* f32 key, finite and > 0; absent: `fallback` if > 0, else PBS2P_ERR_FORMAT. */
static pbs2p_status key_pos_float(const pbs2p_gguf *f, const char *key, float fallback, float *out) {
    pbs2p_status st = pbs2p_gguf_get_f32(f, key, out);
    if (st == PBS2P_ERR_NOT_FOUND && fallback > 0) {
        *out = fallback;
        return PBS2P_OK;
    }
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key %s", key);
    if (st != PBS2P_OK) return pbs2p_fail(st, "key %s: %s", key, pbs2p_last_error());
    if (!(isfinite(*out) && *out > 0)) return pbs2p_fail(PBS2P_ERR_FORMAT, "key %s = %g must be finite and > 0", key, *out);
    return PBS2P_OK;
}

/* String key into buf (NUL-terminated, < cap bytes); *present = 0 when absent. */
static pbs2p_status key_str(const pbs2p_gguf *f, const char *key, char *buf, size_t cap, int *present) {
    const char *s;
    size_t len;
    pbs2p_status st = pbs2p_gguf_get_str(f, key, &s, &len);
    *present = st == PBS2P_OK;
    buf[0] = '\0';
    if (st == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (st != PBS2P_OK) return pbs2p_fail(st, "key %s: %s", key, pbs2p_last_error());
    if (len >= cap || memchr(s, '\0', len)) return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "key %s: unknown value '%.*s'",
                                                              key, (int)(len < SHOWN ? len : SHOWN), s);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return PBS2P_OK;
}

/* A copy of F32 tensor `name` of n elements (1-D); NULL *out when absent and !required. */
static pbs2p_status read_f32(const pbs2p_gguf *f, const char *name, int32_t n, int required, float **out) {
    pbs2p_gguf_tensor t;
    *out = NULL;
    pbs2p_status st = pbs2p_gguf_find_tensor(f, name, &t);
    if (st == PBS2P_ERR_NOT_FOUND && !required) return PBS2P_OK;
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the tensor %s", name);
    if (st != PBS2P_OK) return st;
    if (t.type != PBS2P_GGML_F32 || t.n_dims != 1 || t.ne[0] != (uint64_t)n)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s must be F32 of shape (%d,), found %s with %" PRIu64 " elements",
                          name, n, pbs2p_ggml_type_name(t.type) ? pbs2p_ggml_type_name(t.type) : "?", t.n_elements);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for tensor %s", name);
    memcpy(v, t.data, (size_t)n * sizeof *v); /* the mapping may be unaligned for float */
    *out = v;
    return PBS2P_OK;
}

/* F16 / Q8_0 matrix `name` of numpy shape (rows, cols); rows == 0 accepts any row count. */
static pbs2p_status read_rows(const pbs2p_gguf *f, const char *name, int32_t rows, int32_t cols, row_matrix *out) {
    pbs2p_gguf_tensor t;
    pbs2p_status st = pbs2p_gguf_find_tensor(f, name, &t);
    if (st != PBS2P_OK) return st;
    const char *tn = pbs2p_ggml_type_name(t.type);
    if (t.type != PBS2P_GGML_F16 && t.type != PBS2P_GGML_Q8_0)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "tensor %s has type %s; the model runtime reads F16 or Q8_0", name,
                          tn ? tn : "?");
    if (t.n_dims != 2 || t.ne[0] != (uint64_t)cols || (rows && t.ne[1] != (uint64_t)rows) || t.ne[1] > MAX_VOCAB)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s has ne (%" PRIu64 ", %" PRIu64 "), expected (%d, %d)", name,
                          t.ne[0], t.n_dims > 1 ? t.ne[1] : 1, cols, rows);
    out->data = t.data;
    out->type = t.type;
    out->rows = (int32_t)t.ne[1];
    out->row_bytes = t.type == PBS2P_GGML_F16 ? (size_t)cols * 2 : (size_t)cols / Q8_0_BLOCK * Q8_0_BYTES;
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * Building and freeing the weights, the KV cache and the model */

static void free_linear(linear *l) {
    pbs2p_layer_free(l->layer);
    free(l->bias);
    l->layer = NULL;
    l->bias = NULL;
}

/* blk.<i>.<name>: the packed linear of shape (rows, cols) and its optional F32 bias. */
static pbs2p_status build_linear(const pbs2p_gguf *f, int32_t i, const char *name, int32_t rows, int32_t cols,
                                 linear *l) {
    char base[64], key[80];
    snprintf(base, sizeof base, "blk.%d.%s", i, name);
    pbs2p_layer_desc d;
    pbs2p_status st = pbs2p_gguf_layer_desc(f, base, &d);
    if (st == PBS2P_ERR_NOT_FOUND) {
        pbs2p_gguf_tensor t;
        snprintf(key, sizeof key, "%s.weight", base);
        if (pbs2p_gguf_find_tensor(f, key, &t) == PBS2P_OK)
            return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "%s is a dense linear; the model runtime needs every "
                              "decoder-block linear packed", base);
        return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the linear %s", base);
    }
    if (st != PBS2P_OK) return st;
    if (d.rows != rows || d.cols != cols)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "linear %s is (%d, %d), the hyper-parameters say (%d, %d)", base,
                          d.rows, d.cols, rows, cols);
    l->rows = rows;
    l->cols = cols;
    snprintf(key, sizeof key, "%s.bias", base);
    if ((st = read_f32(f, key, rows, 0, &l->bias)) != PBS2P_OK) return st;
    if ((st = pbs2p_layer_prepare(&d, &l->layer)) != PBS2P_OK) {
        free_linear(l);
        return st;
    }
    return PBS2P_OK;
}

static void free_block(block *b) {
    free(b->attn_norm);
    free(b->ffn_norm);
    for (int k = 0; k < N_LIN; k++) free_linear(&b->lin[k]);
}

static pbs2p_status build_block(const pbs2p_gguf *f, const config *c, int32_t i, block *b) {
    const int32_t D = c->n_embd, F = c->n_ff, QD = c->n_head * c->head_dim, KVD = c->n_head_kv * c->head_dim;
    const int32_t shape[N_LIN][2] = {{QD, D}, {KVD, D}, {KVD, D}, {D, QD}, {F, D}, {F, D}, {D, F}};
    char name[64];
    pbs2p_status st;
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", i);
    if ((st = read_f32(f, name, D, 1, &b->attn_norm)) != PBS2P_OK) return st;
    snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", i);
    if ((st = read_f32(f, name, D, 1, &b->ffn_norm)) != PBS2P_OK) return st;
    for (int k = 0; k < N_LIN; k++)
        if ((st = build_linear(f, i, LIN_NAMES[k], shape[k][0], shape[k][1], &b->lin[k])) != PBS2P_OK) return st;
    return PBS2P_OK;
}

/* RoPE angle per position of each rotated pair (d, d + hd/2): base^(-2d/hd), divided by the scaling. */
static pbs2p_status build_rope(const pbs2p_gguf *f, const config *c, float **out) {
    const int32_t half = c->head_dim / 2;
    float base, factor = 1.0f, *divisors = NULL;
    char type[32];
    int has_type;
    pbs2p_status st;
    if ((st = key_pos_float(f, "llama.rope.freq_base", 10000.0f, &base)) != PBS2P_OK) return st;
    if ((st = key_str(f, "llama.rope.scaling.type", type, sizeof type, &has_type)) != PBS2P_OK) return st;
    if (has_type && strcmp(type, "linear") == 0) {
        if ((st = key_pos_float(f, "llama.rope.scaling.factor", 0, &factor)) != PBS2P_OK) return st;
    } else if (has_type && strcmp(type, "llama3") == 0) {
        if ((st = read_f32(f, "rope_freqs.weight", half, 1, &divisors)) != PBS2P_OK) return st;
    } else if (has_type && strcmp(type, "none") != 0) {
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "RoPE scaling '%s' is not supported (none, linear, llama3)", type);
    } else if ((st = read_f32(f, "rope_freqs.weight", half, 0, &divisors)) != PBS2P_OK) {
        return st; /* llama.cpp applies rope_freqs whenever the file has it */
    }
    float *inv_freq = malloc((size_t)half * sizeof *inv_freq);
    if (!inv_freq) {
        free(divisors);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for RoPE frequencies");
    }
    for (int32_t d = 0; d < half; d++) {
        float dv = divisors ? divisors[d] : factor;
        if (!(isfinite(dv) && dv > 0)) {
            free(divisors);
            free(inv_freq);
            return pbs2p_fail(PBS2P_ERR_FORMAT, "rope_freqs.weight[%d] = %g must be finite and > 0", d, dv);
        }
        /* Hugging Face: 1 / base^(2d / hd) in float32 */
        inv_freq[d] = (float)(1.0 / pow((double)base, (double)(2 * d) / (double)c->head_dim)) / dv;
    }
    free(divisors);
    *out = inv_freq;
    return PBS2P_OK;
}

static void free_weights(weights *w, int32_t n_layer) {
    if (w->blocks)
        for (int32_t i = 0; i < n_layer; i++) free_block(&w->blocks[i]);
    free(w->blocks);
    free(w->output_norm);
    free(w->inv_freq);
    memset(w, 0, sizeof *w);
}

static pbs2p_status build_weights(const pbs2p_gguf *f, const config *c, weights *w) {
    pbs2p_status st;
    if ((st = read_rows(f, "token_embd.weight", c->n_vocab, c->n_embd, &w->token_embd)) != PBS2P_OK) return st;
    st = read_rows(f, "output.weight", c->n_vocab, c->n_embd, &w->output);
    w->tied = st == PBS2P_ERR_NOT_FOUND;
    if (w->tied) w->output = w->token_embd;
    else if (st != PBS2P_OK) return st;
    if ((st = read_f32(f, "output_norm.weight", c->n_embd, 1, &w->output_norm)) != PBS2P_OK) return st;
    if ((st = build_rope(f, c, &w->inv_freq)) != PBS2P_OK) return st;
    w->blocks = calloc((size_t)c->n_layer, sizeof *w->blocks);
    if (!w->blocks) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %d blocks", c->n_layer);
    for (int32_t i = 0; i < c->n_layer; i++)
        if ((st = build_block(f, c, i, &w->blocks[i])) != PBS2P_OK) return st;
    return PBS2P_OK;
}

static void free_cache(kv_cache *kv) {
    free(kv->key);
    free(kv->value);
    kv->key = kv->value = NULL;
}

static pbs2p_status build_cache(const config *c, int32_t n_ctx, kv_cache *kv) {
    size_t n = (size_t)c->n_layer * (size_t)n_ctx * (size_t)c->n_head_kv * (size_t)c->head_dim;
    kv->key = calloc(n, sizeof(float));
    kv->value = calloc(n, sizeof(float));
    if (!kv->key || !kv->value) {
        free_cache(kv);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a KV cache of %zu floats x 2", n);
    }
    return PBS2P_OK;
}

/* Hyper-parameters (docs/GGUF.md §3, llama), checked against each other; shapes are checked with the tensors. */
static pbs2p_status read_config(const pbs2p_gguf *f, config *c) {
    pbs2p_status st;
    if ((st = key_int(f, "llama.embedding_length", -1, 1, MAX_EMBD, &c->n_embd)) != PBS2P_OK ||
        (st = key_int(f, "llama.feed_forward_length", -1, 1, MAX_FF, &c->n_ff)) != PBS2P_OK ||
        (st = key_int(f, "llama.block_count", -1, 1, MAX_LAYER, &c->n_layer)) != PBS2P_OK ||
        (st = key_int(f, "llama.attention.head_count", -1, 1, MAX_HEAD, &c->n_head)) != PBS2P_OK ||
        (st = key_int(f, "llama.attention.head_count_kv", c->n_head, 1, MAX_HEAD, &c->n_head_kv)) != PBS2P_OK ||
        (st = key_int(f, "llama.context_length", -1, 1, MAX_CTX, &c->n_ctx_train)) != PBS2P_OK ||
        (st = key_pos_float(f, "llama.attention.layer_norm_rms_epsilon", 0, &c->eps)) != PBS2P_OK)
        return st;
    if (c->n_head % c->n_head_kv)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "head_count %d is not a multiple of head_count_kv %d", c->n_head,
                          c->n_head_kv);
    int32_t hd_default = c->n_embd % c->n_head ? -1 : c->n_embd / c->n_head, v_len, rot;
    if ((st = key_int(f, "llama.attention.key_length", hd_default, 2, MAX_EMBD, &c->head_dim)) != PBS2P_OK ||
        (st = key_int(f, "llama.attention.value_length", c->head_dim, 1, MAX_EMBD, &v_len)) != PBS2P_OK ||
        (st = key_int(f, "llama.rope.dimension_count", c->head_dim, 1, MAX_EMBD, &rot)) != PBS2P_OK)
        return st;
    if (c->head_dim % 2) return pbs2p_fail(PBS2P_ERR_FORMAT, "head dimension %d must be even for RoPE", c->head_dim);
    if (v_len != c->head_dim || rot != c->head_dim)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "key_length %d, value_length %d and rope.dimension_count %d differ; "
                          "the model runtime needs them equal", c->head_dim, v_len, rot);
    if ((int64_t)c->n_head * c->head_dim > MAX_EMBD * 4)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "head_count x head dimension %d x %d is implausibly large", c->n_head,
                          c->head_dim);
    return PBS2P_OK;
}

void pbs2p_model_free(pbs2p_model *m) {
    if (!m) return;
    free_cache(&m->kv);
    free_weights(&m->w, m->c.n_layer);
    pbs2p_gguf_close(m->file);
    free(m);
}

/* Scratch floats of one eval of T tokens (see build_run below). */
static size_t run_floats(const config *c, size_t T, int32_t n_ctx, int32_t n_threads) {
    size_t D = (size_t)c->n_embd, QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    size_t wide = QD > D ? QD : D;
    return T * (2 * D + wide + QD + 2 * KVD + 2 * (size_t)c->n_ff) + (size_t)n_threads * (size_t)n_ctx;
}

static pbs2p_status check_arch(const pbs2p_gguf *f) {
    char arch[16], pairing[16];
    int present;
    pbs2p_status st;
    if ((st = key_str(f, "general.architecture", arch, sizeof arch, &present)) != PBS2P_OK) return st;
    if (!present) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key general.architecture");
    if (strcmp(arch, "llama") != 0)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "architecture '%s' is not supported by the model runtime yet "
                          "(only 'llama')", arch);
    if ((st = key_str(f, "pbs2p.rope.pairing", pairing, sizeof pairing, &present)) != PBS2P_OK) return st;
    if (!present) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key pbs2p.rope.pairing");
    if (strcmp(pairing, "half") != 0)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "pbs2p.rope.pairing '%s' is not supported (only 'half')", pairing);
    return PBS2P_OK;
}

static pbs2p_status load(const char *path, const pbs2p_model_params *params, pbs2p_model *m) {
    pbs2p_status st;
    int32_t n_threads = params ? params->n_threads : 0, n_ctx = params ? params->n_ctx : 0;
    if (n_threads == 0) n_threads = 1;
    if (n_threads < 1 || n_threads > PBS2P_MODEL_MAX_THREADS)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_threads %d must be in 1..%d (0 = 1)", n_threads,
                          PBS2P_MODEL_MAX_THREADS);
    if (n_ctx < 0) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_ctx %d must be >= 0 (0 = default)", n_ctx);
    if ((st = pbs2p_gguf_open(path, &m->file)) != PBS2P_OK) return st;
    const pbs2p_gguf *f = m->file;
    if ((st = pbs2p_gguf_check_linears(f, NULL)) != PBS2P_OK) return st; /* NOT_PBS2P for a stock GGUF */
    if ((st = check_arch(f)) != PBS2P_OK || (st = read_config(f, &m->c)) != PBS2P_OK) return st;

    /* n_vocab from the embedding's shape; llama.vocab_size, when present, must agree */
    row_matrix probe;
    if ((st = read_rows(f, "token_embd.weight", 0, m->c.n_embd, &probe)) != PBS2P_OK)
        return st == PBS2P_ERR_NOT_FOUND ? pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks token_embd.weight") : st;
    if ((st = key_int(f, "llama.vocab_size", probe.rows, 1, MAX_VOCAB, &m->c.n_vocab)) != PBS2P_OK) return st;
    if (m->c.n_vocab != probe.rows)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "llama.vocab_size %d disagrees with token_embd.weight's %d rows",
                          m->c.n_vocab, probe.rows);

    if (n_ctx == 0) n_ctx = m->c.n_ctx_train < PBS2P_MODEL_DEFAULT_CTX ? m->c.n_ctx_train : PBS2P_MODEL_DEFAULT_CTX;
    if (n_ctx > m->c.n_ctx_train)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_ctx %d exceeds the model's context_length %d", n_ctx,
                          m->c.n_ctx_train);
    /* resource guard before the large allocations: KV cache + scratch of a full-context eval */
    const config *c = &m->c;
    uint64_t kv_bytes = 2ull * (uint64_t)c->n_layer * (uint64_t)n_ctx * (uint64_t)c->n_head_kv * (uint64_t)c->head_dim * 4;
    uint64_t run_bytes = (uint64_t)run_floats(c, (size_t)n_ctx, n_ctx, n_threads) * 4;
    if (kv_bytes + run_bytes > PBS2P_MODEL_MAX_STATE_BYTES)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_ctx %d needs %" PRIu64 " MiB of KV cache and scratch, above the "
                          "limit of %" PRIu64 " MiB; lower n_ctx", n_ctx, (kv_bytes + run_bytes) >> 20,
                          PBS2P_MODEL_MAX_STATE_BYTES >> 20);
    m->n_ctx = n_ctx;
    m->n_threads = n_threads;

    if ((st = build_weights(f, c, &m->w)) != PBS2P_OK) return st;
    return build_cache(c, n_ctx, &m->kv);
}

pbs2p_status pbs2p_model_load(const char *path, const pbs2p_model_params *params, pbs2p_model **out) {
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "out is NULL");
    *out = NULL;
    if (!path) return pbs2p_fail(PBS2P_ERR_NULL, "path is NULL");
    pbs2p_model *m = calloc(1, sizeof *m);
    if (!m) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the model");
    pbs2p_status st = load(path, params, m);
    if (st != PBS2P_OK) {
        pbs2p_model_free(m);
        return st;
    }
    *out = m;
    return PBS2P_OK;
}

pbs2p_status pbs2p_model_get_info(const pbs2p_model *m, pbs2p_model_info *out) {
    if (!m || !out) return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", m ? "out" : "model");
    memset(out, 0, sizeof *out);
    snprintf(out->arch, sizeof out->arch, "llama");
    out->n_vocab = m->c.n_vocab;
    out->n_ctx = m->n_ctx;
    out->n_ctx_train = m->c.n_ctx_train;
    out->n_layer = m->c.n_layer;
    out->n_embd = m->c.n_embd;
    out->n_ff = m->c.n_ff;
    out->n_head = m->c.n_head;
    out->n_head_kv = m->c.n_head_kv;
    out->head_dim = m->c.head_dim;
    out->n_threads = m->n_threads;
    out->n_cached = m->n_cached;
    out->tied = m->w.tied;
    return PBS2P_OK;
}

pbs2p_status pbs2p_model_reset(pbs2p_model *m) {
    if (!m) return pbs2p_fail(PBS2P_ERR_NULL, "model is NULL");
    m->n_cached = 0;
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * Math: one token row at a time, float32 */

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

/* out (D,) = row r of an F16 / Q8_0 matrix. */
static void dequant_row(const row_matrix *w, int32_t r, int32_t D, float *out) {
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

/* out (D,) = x / sqrt(mean(x^2) + eps) * weight, as Hugging Face LlamaRMSNorm (float32). */
static void rmsnorm(float *out, const float *x, const float *weight, int32_t D, float eps) {
    float ss = 0.0f;
    for (int32_t j = 0; j < D; j++) ss += x[j] * x[j];
    float scale = 1.0f / sqrtf(ss / (float)D + eps);
    for (int32_t j = 0; j < D; j++) out[j] = weight[j] * (x[j] * scale);
}

/* Rotate-half RoPE of n_heads heads of vec (n_heads * hd,) at position pos: the pair (d, d + hd/2) turns by
 * pos * inv_freq[d] (Hugging Face order: q * cos + rotate_half(q) * sin). */
static void rope(float *vec, int32_t n_heads, int32_t hd, int32_t pos, const float *inv_freq) {
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

/* x . y over n floats: eight interleaved partial sums (a fixed order the compiler can vectorize), then a tail. */
static float dot(const float *x, const float *y, int32_t n) {
    float acc[8] = {0};
    int32_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[k + j] * y[k + j];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; k < n; k++) sum += x[k] * y[k];
    return sum;
}

/* x (n,) -> softmax(x) in place. */
static void softmax(float *x, int32_t n) {
    float mx = x[0], sum = 0.0f;
    for (int32_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int32_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int32_t i = 0; i < n; i++) x[i] /= sum;
}

/* Y (T, rows) = X (T, cols) W_hat^T [+ bias]: gemv for one token, gemm for several. */
static pbs2p_status matmul(const linear *l, const float *X, int32_t T, float *Y, int n_threads) {
    const size_t R = (size_t)l->rows, K = (size_t)l->cols;
    pbs2p_status st = T == 1 ? pbs2p_gemv(l->layer, X, K, Y, R, n_threads)
                             : pbs2p_gemm(l->layer, X, (size_t)T, (size_t)T * K, Y, (size_t)T * R, n_threads);
    if (st != PBS2P_OK || !l->bias) return st;
    for (int32_t t = 0; t < T; t++)
        for (size_t i = 0; i < R; i++) Y[(size_t)t * R + i] += l->bias[i];
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * Threads: job 0 on the caller, jobs 1..n-1 on new threads; each job writes its own outputs, so results do not
 * depend on the number of threads */

static int threads_for(size_t work, int n_threads) {
    size_t useful = work / pbs2p_min_work_per_thread();
    return (size_t)n_threads > useful ? (useful > 0 ? (int)useful : 1) : n_threads;
}

/* jobs: n items of `size` bytes, each passed to fn. */
static pbs2p_status parallel(void *(*fn)(void *), void *jobs, size_t size, int n, const char *what) {
    pthread_t tid[PBS2P_MODEL_MAX_THREADS];
    pbs2p_status st = PBS2P_OK;
    int started = 1;
    for (; started < n; started++)
        if (pthread_create(&tid[started], NULL, fn, (char *)jobs + (size_t)started * size) != 0) {
            st = pbs2p_fail(PBS2P_ERR_THREAD, "could not start %s thread %d of %d", what, started, n);
            break;
        }
    fn(jobs);
    for (int b = 1; b < started; b++) pthread_join(tid[b], NULL);
    return st;
}

/* ----------------------------------------------------------------------------------------------------
 * The head: logits (T, V) = X (T, D) E^T, vocabulary rows split across threads */

typedef struct head_job {
    const row_matrix *w;
    const float *X;     /* (T, D) normed final hidden states */
    float *logits;      /* (T, V) */
    int32_t T, D, V, v0, v1;
    float *row;         /* (D,) this job's dequantized vocabulary row */
} head_job;

static void *run_head(void *arg) {
    const head_job *j = arg;
    for (int32_t v = j->v0; v < j->v1; v++) {
        dequant_row(j->w, v, j->D, j->row);
        for (int32_t t = 0; t < j->T; t++) j->logits[(size_t)t * j->V + v] = dot(j->X + (size_t)t * j->D, j->row, j->D);
    }
    return NULL;
}

static pbs2p_status head(const pbs2p_model *m, const float *X, int32_t T, float *logits) {
    const int32_t V = m->c.n_vocab, D = m->c.n_embd;
    const int nt = threads_for((size_t)V * (size_t)D * (size_t)T, m->n_threads);
    float *rows = malloc((size_t)nt * (size_t)D * sizeof *rows); /* (nt, D) */
    if (!rows) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the head");
    head_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int b = 0; b < nt; b++)
        jobs[b] = (head_job){&m->w.output, X, logits, T, D, V, (int32_t)((int64_t)V * b / nt),
                             (int32_t)((int64_t)V * (b + 1) / nt), rows + (size_t)b * D};
    pbs2p_status st = parallel(run_head, jobs, sizeof jobs[0], nt, "head");
    free(rows);
    return st;
}

/* ----------------------------------------------------------------------------------------------------
 * The forward pass */

/* Scratch of one eval of T tokens, one malloc. */
typedef struct run_state {
    float *x;           /* (T, D) residual stream */
    float *xb;          /* (T, D) normed input of attention / MLP */
    float *att_out;     /* (T, max(QD, D)) attention output (before o), then projections' outputs */
    float *q;           /* (T, QD) queries, QD = H * hd */
    float *k, *v;       /* (T, KVD) new keys and values, KVD = Hkv * hd */
    float *hb, *hb2;    /* (T, F) gate and up projections, then silu(gate) * up */
    float *scores;      /* (n_threads, n_ctx) attention weights of one (token, head) per thread */
} run_state;

static void free_run(run_state *s) {
    free(s->x);
    s->x = NULL;
}

static pbs2p_status build_run(const config *c, int32_t T, int32_t n_ctx, int32_t n_threads, run_state *s) {
    const size_t D = (size_t)c->n_embd, QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    float *p = malloc(run_floats(c, (size_t)T, n_ctx, n_threads) * sizeof *p);
    if (!p) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the activations of %d tokens", T);
    s->x = p;                  p += (size_t)T * D;
    s->xb = p;                 p += (size_t)T * D;
    s->att_out = p;            p += (size_t)T * (QD > D ? QD : D);
    s->q = p;                  p += (size_t)T * QD;
    s->k = p;                  p += (size_t)T * KVD;
    s->v = p;                  p += (size_t)T * KVD;
    s->hb = p;                 p += (size_t)T * (size_t)c->n_ff;
    s->hb2 = p;                p += (size_t)T * (size_t)c->n_ff;
    s->scores = p;
    return PBS2P_OK;
}

typedef struct attention_job {
    const pbs2p_model *m;
    run_state *s;
    int32_t l, T, n_past;
    int32_t first, stride; /* this job's (token, head) pairs: i = first, first + stride, ... < T * H */
    float *scores;         /* (n_ctx,) this job's attention weights */
} attention_job;

/* Causal attention of the job's (token t, head h) pairs: softmax(q k^T / sqrt(hd)) v over cache positions
 * 0..n_past+t of layer l; query head h reads KV head h / (H / Hkv). */
static void *run_attention(void *arg) {
    const attention_job *j = arg;
    const config *c = &j->m->c;
    const int32_t hd = c->head_dim, group = c->n_head / c->n_head_kv;
    const size_t QD = (size_t)c->n_head * hd, KVD = (size_t)c->n_head_kv * hd, n_ctx = (size_t)j->m->n_ctx;
    const float *kc = j->m->kv.key + (size_t)j->l * n_ctx * KVD, *vc = j->m->kv.value + (size_t)j->l * n_ctx * KVD;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int32_t i = j->first; i < j->T * c->n_head; i += j->stride) {
        const int32_t t = i / c->n_head, h = i % c->n_head, n = j->n_past + t + 1; /* visible positions */
        const float *q = j->s->q + (size_t)t * QD + (size_t)h * hd;
        const size_t kv_off = (size_t)(h / group) * hd;
        for (int32_t p = 0; p < n; p++) j->scores[p] = dot(q, kc + (size_t)p * KVD + kv_off, hd) * scale;
        softmax(j->scores, n);
        float *out = j->s->att_out + (size_t)t * QD + (size_t)h * hd;
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int32_t p = 0; p < n; p++) {
            const float *v = vc + (size_t)p * KVD + kv_off, a = j->scores[p];
            for (int32_t d = 0; d < hd; d++) out[d] += a * v[d];
        }
    }
    return NULL;
}

static pbs2p_status attention(const pbs2p_model *m, run_state *s, int32_t l, int32_t T, int32_t n_past) {
    const config *c = &m->c;
    /* q.k and p.v multiply-adds: 2 hd per (token, head, visible position) */
    const size_t work = 2 * (size_t)c->head_dim * (size_t)c->n_head * (size_t)T * ((size_t)n_past + (size_t)T);
    const int nt = threads_for(work, m->n_threads < T * c->n_head ? m->n_threads : T * c->n_head);
    attention_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int b = 0; b < nt; b++)
        jobs[b] = (attention_job){m, s, l, T, n_past, b, nt, s->scores + (size_t)b * m->n_ctx};
    return parallel(run_attention, jobs, sizeof jobs[0], nt, "attention");
}

/* One decoder block over the T tokens of s->x (updated in place). */
static pbs2p_status forward_block(pbs2p_model *m, run_state *s, int32_t l, int32_t T, int32_t n_past) {
    const config *c = &m->c;
    const block *b = &m->w.blocks[l];
    const int32_t D = c->n_embd, F = c->n_ff, nt = m->n_threads;
    const size_t QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    pbs2p_status st;

    /* attention: xb = norm(x); q, k, v; RoPE; append k, v to the cache; attend; x += o(att) */
    for (int32_t t = 0; t < T; t++) rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, b->attn_norm, D, c->eps);
    if ((st = matmul(&b->lin[LIN_Q], s->xb, T, s->q, nt)) != PBS2P_OK ||
        (st = matmul(&b->lin[LIN_K], s->xb, T, s->k, nt)) != PBS2P_OK ||
        (st = matmul(&b->lin[LIN_V], s->xb, T, s->v, nt)) != PBS2P_OK)
        return st;
    for (int32_t t = 0; t < T; t++) {
        const size_t cache_row = ((size_t)l * m->n_ctx + (size_t)(n_past + t)) * KVD;
        rope(s->q + (size_t)t * QD, c->n_head, c->head_dim, n_past + t, m->w.inv_freq);
        rope(s->k + (size_t)t * KVD, c->n_head_kv, c->head_dim, n_past + t, m->w.inv_freq);
        memcpy(m->kv.key + cache_row, s->k + (size_t)t * KVD, KVD * sizeof(float));
        memcpy(m->kv.value + cache_row, s->v + (size_t)t * KVD, KVD * sizeof(float));
    }
    if ((st = attention(m, s, l, T, n_past)) != PBS2P_OK) return st;
    if ((st = matmul(&b->lin[LIN_O], s->att_out, T, s->xb, nt)) != PBS2P_OK) return st;
    for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->xb[i];

    /* MLP: xb = norm(x); x += down(silu(gate(xb)) * up(xb)) */
    for (int32_t t = 0; t < T; t++) rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, b->ffn_norm, D, c->eps);
    if ((st = matmul(&b->lin[LIN_GATE], s->xb, T, s->hb, nt)) != PBS2P_OK ||
        (st = matmul(&b->lin[LIN_UP], s->xb, T, s->hb2, nt)) != PBS2P_OK)
        return st;
    for (size_t i = 0; i < (size_t)T * F; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
    }
    if ((st = matmul(&b->lin[LIN_DOWN], s->hb, T, s->xb, nt)) != PBS2P_OK) return st;
    for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->xb[i];
    return PBS2P_OK;
}

static pbs2p_status forward(pbs2p_model *m, run_state *s, const int32_t *tokens, int32_t T, int32_t n_past,
                            float *logits, int all_rows) {
    const config *c = &m->c;
    const int32_t D = c->n_embd;
    pbs2p_status st;
    for (int32_t t = 0; t < T; t++) dequant_row(&m->w.token_embd, tokens[t], D, s->x + (size_t)t * D);
    for (int32_t l = 0; l < c->n_layer; l++)
        if ((st = forward_block(m, s, l, T, n_past)) != PBS2P_OK) return st;
    /* final norm of the rows the head needs, then the head */
    const int32_t first = all_rows ? 0 : T - 1;
    for (int32_t t = first; t < T; t++)
        rmsnorm(s->xb + (size_t)(t - first) * D, s->x + (size_t)t * D, m->w.output_norm, D, c->eps);
    return head(m, s->xb, T - first, logits);
}

pbs2p_status pbs2p_model_eval(pbs2p_model *m, const int32_t *tokens, int32_t n_tokens, int32_t n_past,
                              float *logits, size_t logits_len) {
    if (!m) return pbs2p_fail(PBS2P_ERR_NULL, "model is NULL");
    if (!tokens || !logits) return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", tokens ? "logits" : "tokens");
    const int32_t V = m->c.n_vocab;
    if (n_tokens < 1) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_tokens %d must be >= 1", n_tokens);
    if (n_past < 0 || n_past > m->n_cached)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_past %d must be in 0..%d (the positions in the KV cache)", n_past,
                          m->n_cached);
    if ((int64_t)n_past + n_tokens > m->n_ctx)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_past %d + n_tokens %d exceeds n_ctx %d", n_past, n_tokens, m->n_ctx);
    for (int32_t t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return pbs2p_fail(PBS2P_ERR_ARGUMENT, "token %d at index %d is outside the vocabulary 0..%d", tokens[t], t,
                              V - 1);
    const int all_rows = logits_len == (size_t)n_tokens * (size_t)V;
    if (!all_rows && logits_len != (size_t)V)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "logits holds %zu floats; expected n_tokens x n_vocab = %zu or n_vocab "
                          "= %d", logits_len, (size_t)n_tokens * (size_t)V, V);
    run_state s = {0};
    pbs2p_status st = build_run(&m->c, n_tokens, m->n_ctx, m->n_threads, &s);
    if (st != PBS2P_OK) return st;
    st = forward(m, &s, tokens, n_tokens, n_past, logits, all_rows);
    free_run(&s);
    m->n_cached = st == PBS2P_OK ? n_past + n_tokens : n_past;
    return st;
}
