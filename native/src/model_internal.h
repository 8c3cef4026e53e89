/* model_internal.h — the model runtime's structs and the functions its files (model*.c) share. */
#ifndef PBS2P_MODEL_INTERNAL_H
#define PBS2P_MODEL_INTERNAL_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

#define SHOWN 80                        /* bytes of a name quoted in an error message */
#define MAX_EMBD (1 << 16)              /* plausibility caps on hyper-parameters: also keep every */
#define MAX_FF (1 << 20)                /* size product below in range of size_t on 64-bit hosts  */
#define MAX_LAYER (1 << 12)
#define MAX_HEAD (1 << 12)
#define MAX_VOCAB (1 << 24)
#define MAX_CTX (1 << 24)

/* ----------------------------------------------------------------------------------------------------
 * Model structs: hyper-parameters, weights, KV cache */

typedef enum arch_kind { ARCH_LLAMA, ARCH_OPT } arch_kind; /* ARCH_LLAMA also runs the gemma3 layout (config.gemma) */
typedef enum norm_kind { NORM_RMS, NORM_LAYER } norm_kind; /* RMSNorm (weight); LayerNorm (weight, bias) */
typedef enum act_kind { ACT_SILU, ACT_RELU, ACT_GELU, ACT_GELU_TANH } act_kind; /* GELU: erf; GELU_TANH: tanh approx. */

typedef struct config {
    arch_kind arch;
    char arch_name[16]; /* general.architecture, the prefix of the hyper-parameter keys */
    int32_t n_vocab;    /* V */
    int32_t n_embd;     /* D */
    int32_t n_ff;       /* F */
    int32_t n_layer;    /* L */
    int32_t n_head;     /* H */
    int32_t n_head_kv;  /* Hkv, divides H */
    int32_t head_dim;   /* hd (even for RoPE) */
    int32_t n_ctx_train;
    norm_kind norm;
    float eps;          /* RMSNorm / LayerNorm epsilon */
    int norm_before;    /* 1: pre-LN blocks (norm, sublayer, residual); 0: post-LN (sublayer, residual, norm) */
    act_kind act;       /* MLP activation: act(gate) * up with a gate, act(up) without */
    int has_gate;       /* ffn_gate exists (SwiGLU) */
    float q_scale;      /* q *= q_scale after its projection (OPT: hd^-0.5, where Hugging Face applies it) */
    float score_scale;  /* score = (q . k) * score_scale (Llama: hd^-0.5) */
    int32_t pos_offset; /* learned positions: position p reads row p + pos_offset of position_embd */
    int32_t window;     /* sliding window: a query sees itself and the window - 1 positions before it; 0: all */
    int gemma;          /* Gemma 3: embedding x embd_scale, QK-norm, norms after each sublayer, per-layer window */
    float embd_scale;   /* the token embedding is multiplied by it (Gemma: sqrt(D)); 1 otherwise */
} config;

/* A compressed linear: y (rows,) = W_hat x (cols,) [+ bias]; packed (binary tier) or dense (a grid tier). */
typedef struct linear {
    pbs2p_layer *layer; /* packed: prepared, independent of the file; NULL for a dense linear */
    pbs2p_dense dense;  /* dense: the matrix in place in the file mapping (data NULL for a packed linear) */
    float *bias;        /* (rows,) or NULL */
    int32_t rows, cols;
} linear;

enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, N_LIN };

/* The bytes of a linear's weights as held, which its product reads: the prepared layer (bit words and coefficients),
 * or the dense matrix in place in the mapping. */
static inline uint64_t linear_bytes(const linear *l) {
    return l->layer ? (uint64_t)pbs2p_layer_nbytes(l->layer) : (uint64_t)l->dense.rows * l->dense.row_bytes;
}

typedef struct block {
    float *attn_norm, *attn_norm_bias; /* (D,); bias only for LayerNorm */
    float *ffn_norm, *ffn_norm_bias;   /* (D,); bias only for LayerNorm */
    float *attn_post_norm, *ffn_post_norm; /* (D,) RMSNorm of a sublayer's output before the residual (Gemma); or NULL */
    float *q_norm, *k_norm;            /* (hd,) RMSNorm of each query / key head before RoPE (Gemma); or NULL */
    int32_t window;                    /* this layer's sliding window (config.window or 0: all positions) */
    const float *inv_freq;             /* this layer's RoPE angles (weights.inv_freq or inv_freq_swa); NULL: none */
    linear lin[N_LIN];  /* q (H*hd, D), k (Hkv*hd, D), v (Hkv*hd, D), o (D, H*hd), gate/up (F, D), down (D, F);
                         * gate only when has_gate (layer NULL otherwise) */
} block;

/* A (rows, D) matrix of F16 or Q8_0 rows inside the file mapping: the dense-row kernels' pbs2p_dense (internal.h),
 * decoded one row at a time by pbs2p_dense_row. */
typedef pbs2p_dense row_matrix;

typedef struct weights {
    row_matrix token_embd;    /* (V, D) */
    row_matrix position_embd; /* (>= n_ctx_train + pos_offset, D) learned positions (OPT); data NULL otherwise */
    row_matrix output;        /* (V, D): output.weight, or token_embd when tied */
    int tied;
    float *output_norm;       /* (D,); NULL when the model has no final norm (OPT post-LN) */
    float *output_norm_bias;  /* (D,) LayerNorm only */
    block *blocks;            /* (L,) */
    float *inv_freq;          /* (hd/2,) RoPE angle per position, radians, scaling included; NULL without RoPE */
    float *inv_freq_swa;      /* (hd/2,) the sliding layers' own (Gemma: rope.freq_base_swa); NULL: inv_freq */
} weights;

/* The KV cache. float32 (f16 = 0): keys (L, Hkv*hd, ldk) transposed, a key dimension's positions contiguous (attend),
 * values (L, n_ctx, Hkv*hd). float16 (f16 = 1, the default), laid out for decoding, which reads every position of
 * each KV head once per step: tiles of PBS2P_KV_TILE positions (keys: hd rows of the tile's positions; values: the
 * positions' rows of hd), PBS2P_KV_SPAN tiles of a head in a row, the spans in (span, layer, KV head) order
 * (internal.h, pbs2p_kv_key / pbs2p_kv_value). A head's spans are kv16_span_stride apart, and a cache whose first k
 * spans are in use has touched only those. */
typedef struct kv_cache {
    void *key;
    void *value;
    size_t ldk;         /* float32: kv_key_stride(n_ctx) */
    size_t key_bytes, value_bytes; /* of key and value (pbs2p_huge_alloc) */
    int f16;            /* entries are float16 bits (uint16_t), else float */
} kv_cache;

/* Floats from one key dimension's positions to the next: n_ctx rounded up to an odd number of 64-byte lines. attend
 * reads the positions of every key dimension of a head together; with rows a multiple of 4 KiB apart (n_ctx 2048)
 * they would all fall in the same few L1 cache sets and evict each other. */
static inline size_t kv_key_stride(int32_t n_ctx) {
    const size_t lines = ((size_t)n_ctx + 15) / 16;
    return 16 * (lines % 2 ? lines : lines + 1);
}

/* Positions a float16 cache holds per KV head: n_ctx rounded up to whole spans. */
static inline size_t kv16_positions(int32_t n_ctx) {
    const size_t span = (size_t)PBS2P_KV_TILE * PBS2P_KV_SPAN;
    return ((size_t)n_ctx + span - 1) / span * span;
}

/* Entries of one KV head's span (its keys, or its values). */
static inline size_t kv16_span_entries(const config *c) {
    return (size_t)c->head_dim * PBS2P_KV_TILE * PBS2P_KV_SPAN;
}

/* Entries from one span of a float16 cache's KV head to its next: a span of every layer and KV head. */
static inline size_t kv16_span_stride(const config *c) {
    return (size_t)c->n_layer * (size_t)c->n_head_kv * kv16_span_entries(c);
}

/* Span 0 of KV head h of layer l, in the keys and in the values (pbs2p_kv_key / pbs2p_kv_value add a position's). */
static inline uint16_t *kv16_keys(const kv_cache *kv, const config *c, int32_t l, int32_t h) {
    return (uint16_t *)kv->key + ((size_t)l * (size_t)c->n_head_kv + (size_t)h) * kv16_span_entries(c);
}
static inline uint16_t *kv16_values(const kv_cache *kv, const config *c, int32_t l, int32_t h) {
    return (uint16_t *)kv->value + ((size_t)l * (size_t)c->n_head_kv + (size_t)h) * kv16_span_entries(c);
}

struct pbs2p_model {
    pbs2p_gguf *file;   /* keeps token_embd / position_embd / output mapped */
    config c;
    weights w;
    kv_cache kv;
    int32_t n_ctx, n_threads, n_cached;
    pbs2p_pool *pool;          /* n_threads - 1 workers for the model's life (NULL with one thread) */
    pbs2p_tokenizer *tok;      /* the file's tokenizer, NULL when it has none or one this library cannot read */
    pbs2p_status tok_status;   /* why tok is NULL (PBS2P_ERR_NOT_FOUND, PBS2P_ERR_UNSUPPORTED) */
    char tok_error[256];       /* and the message of that status */
};

/* Scratch of one eval of T tokens, one malloc. */
typedef struct run_state {
    float *x;           /* (T, D) residual stream */
    float *xb;          /* (T, D) normed input of attention / MLP, then a sublayer's output */
    float *att_out;     /* (T, max(QD, D)) attention output (before o) */
    float *q;           /* (T, QD) queries, QD = H * hd */
    float *k, *v;       /* (T, KVD) new keys and values, KVD = Hkv * hd */
    float *hb, *hb2;    /* (T, F) gate (or up) and up projections, then the activation */
    float *scores;      /* (n_threads, PBS2P_ATTEND_F16_QUERIES, n_ctx) attention weights of a thread's queries */
} run_state;

/* ----------------------------------------------------------------------------------------------------
 * model_read.c: keys and tensors of the file */

/* "<arch>.<suffix>" into buf. */
const char *arch_key(const config *c, const char *suffix, char *buf, size_t cap);
/* u32 key as int32 in [lo, hi]; absent: `fallback` if >= 0, else PBS2P_ERR_FORMAT. */
pbs2p_status key_int(const pbs2p_gguf *f, const char *key, int64_t fallback, int32_t lo, int32_t hi, int32_t *out);
/* f32 key, finite and > 0; absent: `fallback` if > 0, else PBS2P_ERR_FORMAT. */
pbs2p_status key_pos_float(const pbs2p_gguf *f, const char *key, float fallback, float *out);
/* String key into buf (NUL-terminated, < cap bytes); *present = 0 when absent. */
pbs2p_status key_str(const pbs2p_gguf *f, const char *key, char *buf, size_t cap, int *present);
/* A copy of F32 tensor `name` of n elements (1-D); NULL *out when absent and !required; PBS2P_ERR_FORMAT when an
 * element is NaN or infinite. */
pbs2p_status read_f32(const pbs2p_gguf *f, const char *name, int32_t n, int required, float **out);
/* F16 / Q8_0 matrix `name` of numpy shape (rows, cols); rows == 0 accepts any row count. */
pbs2p_status read_rows(const pbs2p_gguf *f, const char *name, int32_t rows, int32_t cols, row_matrix *out);
/* The token embedding / head `base` ("token_embd", "output"): <base>.weight of a ggml type, or our blocks when the
 * file names an embedding tier (pbs2p_gguf_embedding_blocks); rows 0 takes any count. PBS2P_ERR_NOT_FOUND when
 * absent. */
pbs2p_status read_embedding(const pbs2p_gguf *f, const char *base, int32_t rows, int32_t cols, row_matrix *out);

/* model_llama.c: the Llama keys after the common ones (norm, heads, RoPE), and the RoPE frequencies. */
pbs2p_status llama_read_config(const pbs2p_gguf *f, config *c);
pbs2p_status llama_build_rope(const pbs2p_gguf *f, const config *c, float **inv_freq, float **inv_freq_swa);
/* Gemma's global layers: blocks[l].window = 0 where attention.sliding_window_pattern says so (the caller has set
 * every layer's window to c->window; other models keep it). */
pbs2p_status llama_layer_windows(const pbs2p_gguf *f, const config *c, block *blocks);

/* model_opt.c: the OPT keys after the common ones (norm, activation, positions), and the learned positions. */
pbs2p_status opt_read_config(const pbs2p_gguf *f, config *c);
pbs2p_status opt_read_positions(const pbs2p_gguf *f, const config *c, row_matrix *position_embd);

/* ----------------------------------------------------------------------------------------------------
 * model_math.c: one token row at a time, float32 */

/* out (D,) = RMSNorm (bias NULL) or LayerNorm of x, as Hugging Face computes it in float32. */
void norm_row(float *out, const float *x, const float *weight, const float *bias, int32_t D, norm_kind kind, float eps);
/* Rotate-half RoPE of n_heads heads of vec (n_heads * hd,) at position pos. */
void rope(float *vec, int32_t n_heads, int32_t hd, int32_t pos, const float *inv_freq);
/* hb (n,) = act(hb) * up, or act(hb) when up is NULL. */
void activate(float *hb, const float *up, size_t n, act_kind act);
/* Y (T, rows) = X (T, cols) W_hat^T [+ bias] on the pool's threads: gemv for one token, gemm for several. */
pbs2p_status matmul(const linear *l, const float *X, int32_t T, float *Y, pbs2p_pool *pool);
/* Y[k] = matmul(ls[k], X) for n linears of one input (a block's q, k, v; gate, up), bit for bit: X is quantized
 * once, on the pool's threads, for all of those whose products read its plain blocks of 32 (every type but F16;
 * packed layers by pbs2p_q8_plain_blocks), where each product alone would quantize it again. */
pbs2p_status matmul_shared(const linear *const *ls, int n, const float *X, int32_t T, float *const *Y, pbs2p_pool *pool);

/* ----------------------------------------------------------------------------------------------------
 * model_forward.c: the forward */

/* [choice] An eval runs its tokens in chunks of at most this many, each through every block: the scratch of a prompt
 * of any length is a chunk's (at Llama-2-7B's shape 182 KiB a token: 364 MiB for 2048 tokens at once, 11 MiB a
 * chunk), while every kernel's batch (16 tokens in the integer products' passes) still fills. llama.cpp's
 * micro-batch is 512. Every output is as one batch would give it: each product and attention is batch-invariant. */
#define PBS2P_PROMPT_CHUNK 64
/* The tokens one chunk of an eval of T tokens runs at once: what its scratch is sized for. */
static inline int32_t chunk_tokens(int32_t T) { return T < PBS2P_PROMPT_CHUNK ? T : PBS2P_PROMPT_CHUNK; }

/* Scratch floats of one eval of T tokens (run_state); model_load.c checks a full-context eval's against the limit. */
size_t run_floats(const config *c, size_t T, int32_t n_ctx, int32_t n_threads);
/* logits = the forward of tokens (T,) at cache positions n_past..n_past+T-1, their keys and values written into the
 * cache: (T, V) with all_rows, else (V,) the last token's row; in chunks of PBS2P_PROMPT_CHUNK tokens. Arguments
 * checked by the caller (pbs2p_model_eval). */
pbs2p_status model_forward(pbs2p_model *m, const int32_t *tokens, int32_t T, int32_t n_past, float *logits,
                           int all_rows);

/* ----------------------------------------------------------------------------------------------------
 * model_threads.c: the forward's work split over the model's pool (job 0 on the caller, 1..n-1 on its workers) */

/* Threads worth using for a step of `work` multiply-adds in at most n_max jobs: the pool's threads, n_max and
 * work / pbs2p_min_work_per_pool_thread(), whichever is least, but at least 1. */
int threads_for(pbs2p_pool *pool, size_t work, int n_max);
/* Y (T, rows) = X (T, cols) W^T of a dense matrix (head, grid-tier linears), its rows split across the pool's threads. */
pbs2p_status dense_matmul(pbs2p_pool *pool, const pbs2p_dense *W, const float *X, int32_t T, float *Y);
/* dense_matmul of a type other than F16 on X already quantized (A, X's plain blocks of 32). */
pbs2p_status dense_matmul_q8(pbs2p_pool *pool, const pbs2p_dense *W, const pbs2p_q8_acts *A, int32_t T, float *Y);
/* activate (model_math.c) of n elements, and rows (T, D) = the norm of each row of x (T, D) (in place when rows ==
 * x), split across the pool's threads where the work pays for them: the single thread's results. */
void activate_pool(pbs2p_pool *pool, float *hb, const float *up, size_t n, act_kind act);
void norm_rows_pool(pbs2p_pool *pool, const config *c, float *rows, const float *x, int32_t T, const float *weight,
                    const float *bias);
/* X (T, K) quantized into *A in *mem (malloc'd: the caller frees it on PBS2P_OK), a prompt's tokens split across the
 * pool's threads. */
pbs2p_status quantize_acts(pbs2p_pool *pool, const float *X, int32_t T, int32_t K, void **mem, pbs2p_q8_acts *A);

#endif
