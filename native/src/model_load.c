/* model_load.c — opening a pbs2p GGUF as a model (docs/GGUF.md): architecture, hyper-parameters, weights, KV cache
 * (keys and tensors read by model_read.c); freeing them. */
#include "model_internal.h"
#include "gguf_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------------------------------------------
 * Building and freeing the weights, the KV cache and the model */

static const char *const LIN_NAMES[N_LIN] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                             "ffn_down"};

static void free_linear(linear *l) {
    pbs2p_layer_free(l->layer);
    free(l->bias);
    l->layer = NULL;
    l->bias = NULL;
}

/* The packed streams of a prepared layer leave memory: the prepared copy replaces them, so the model's resident
 * memory is the prepared layers plus the dense tensors it reads in place, not both copies of every packed layer. */
static void release_streams(const pbs2p_gguf *f, const pbs2p_layer_desc *d) {
    pbs2p_layer_sizes z;
    if (pbs2p_layer_sizes_of(d, &z) != PBS2P_OK) return;
    const size_t R = (size_t)d->rows;
    pbs2p_gguf_release(f, d->mask, R * z.mask_row_bytes);
    pbs2p_gguf_release(f, d->signs, R * z.signs_row_bytes);
    pbs2p_gguf_release(f, d->signs2, R * z.signs2_row_bytes);
    pbs2p_gguf_release(f, d->salient, z.salient_bytes);
    pbs2p_gguf_release(f, d->groups, R * z.groups_row_bytes);
    pbs2p_gguf_release(f, d->alpha, 2 * z.alpha_count);
    pbs2p_gguf_release(f, d->alpha2, 2 * z.alpha2_count);
    pbs2p_gguf_release(f, d->mu, 2 * z.mu_count);
    pbs2p_gguf_release(f, d->col_scale, 2 * z.col_scale_count);
}

/* blk.<i>.<name>: the linear of shape (rows, cols), packed or dense by its tier, and its optional F32 bias. */
static pbs2p_status build_linear(const pbs2p_gguf *f, int32_t i, const char *name, int32_t rows, int32_t cols,
                                 linear *l) {
    char base[64], key[80];
    snprintf(base, sizeof base, "blk.%d.%s", i, name);
    int dense = 0;
    pbs2p_status st = pbs2p_gguf_linear_tier(f, base, &dense, &l->dense);
    if (st == PBS2P_OK && dense) {
        if (l->dense.rows != rows || l->dense.cols != cols)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "linear %s is (%d, %d), the hyper-parameters say (%d, %d)", base,
                              l->dense.rows, l->dense.cols, rows, cols);
        l->rows = rows;
        l->cols = cols;
        snprintf(key, sizeof key, "%s.bias", base);
        return read_f32(f, key, rows, 0, &l->bias);
    }
    pbs2p_layer_desc d;
    if (st == PBS2P_OK) st = pbs2p_gguf_layer_desc(f, base, &d);
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
    /* plane 1 as the file's kept-order signs (a quarter fewer bytes held and read) where this CPU's kernel reads them */
    pbs2p_kernels k;
    const int flags = pbs2p_kernel_current(&k) && k.q8_kept_signs ? PBS2P_PREPARE_KEPT_SIGNS : 0;
    if ((st = pbs2p_layer_prepare_as(&d, flags, &l->layer)) != PBS2P_OK) {
        free_linear(l);
        return st;
    }
    release_streams(f, &d);
    return PBS2P_OK;
}

/* <name>.weight and, for LayerNorm, <name>.bias, both F32 (D,); absent weight: *weight NULL when !required. */
static pbs2p_status build_norm(const pbs2p_gguf *f, const config *c, const char *name, int required, float **weight,
                               float **bias) {
    char key[80]; /* name < 64 bytes (the callers' buffers) + ".weight" */
    pbs2p_status st;
    snprintf(key, sizeof key, "%s.weight", name);
    if ((st = read_f32(f, key, c->n_embd, required, weight)) != PBS2P_OK || !*weight || c->norm != NORM_LAYER)
        return st;
    snprintf(key, sizeof key, "%s.bias", name);
    return read_f32(f, key, c->n_embd, 1, bias);
}

static void free_block(block *b) {
    free(b->attn_norm);
    free(b->attn_norm_bias);
    free(b->ffn_norm);
    free(b->ffn_norm_bias);
    free(b->attn_post_norm);
    free(b->ffn_post_norm);
    free(b->q_norm);
    free(b->k_norm);
    for (int k = 0; k < N_LIN; k++) free_linear(&b->lin[k]);
}

static pbs2p_status build_block(const pbs2p_gguf *f, const config *c, int32_t i, block *b) {
    const int32_t D = c->n_embd, F = c->n_ff, QD = c->n_head * c->head_dim, KVD = c->n_head_kv * c->head_dim;
    const int32_t shape[N_LIN][2] = {{QD, D}, {KVD, D}, {KVD, D}, {D, QD}, {F, D}, {F, D}, {D, F}};
    char name[64];
    pbs2p_status st;
    snprintf(name, sizeof name, "blk.%d.attn_norm", i);
    if ((st = build_norm(f, c, name, 1, &b->attn_norm, &b->attn_norm_bias)) != PBS2P_OK) return st;
    snprintf(name, sizeof name, "blk.%d.ffn_norm", i);
    if ((st = build_norm(f, c, name, 1, &b->ffn_norm, &b->ffn_norm_bias)) != PBS2P_OK) return st;
    if (c->gemma) { /* the norms after each sublayer and of each query / key head */
        static const char *const extra[4] = {"post_attention_norm", "post_ffw_norm", "attn_q_norm", "attn_k_norm"};
        float **out[4] = {&b->attn_post_norm, &b->ffn_post_norm, &b->q_norm, &b->k_norm};
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", i, extra[k]);
            if ((st = read_f32(f, name, k < 2 ? D : c->head_dim, 1, out[k])) != PBS2P_OK) return st;
        }
    }
    for (int k = 0; k < N_LIN; k++)
        if ((k != LIN_GATE || c->has_gate) &&
            (st = build_linear(f, i, LIN_NAMES[k], shape[k][0], shape[k][1], &b->lin[k])) != PBS2P_OK)
            return st;
    return PBS2P_OK;
}

static void free_weights(weights *w, int32_t n_layer) {
    if (w->blocks)
        for (int32_t i = 0; i < n_layer; i++) free_block(&w->blocks[i]);
    free(w->blocks);
    free(w->output_norm);
    free(w->output_norm_bias);
    free(w->inv_freq);
    free(w->inv_freq_swa);
    memset(w, 0, sizeof *w);
}

typedef struct block_job {
    const pbs2p_gguf *f;
    const config *c;
    weights *w;
    int32_t first, step, failed_at; /* failed_at: the block that failed (n_layer: none) */
    pbs2p_status status;
    char error[256];                /* its message: pbs2p_last_error() is per thread */
} block_job;

static void run_block_job(void *arg) {
    block_job *j = arg;
    for (int32_t i = j->first; i < j->c->n_layer; i += j->step)
        if ((j->status = build_block(j->f, j->c, i, &j->w->blocks[i])) != PBS2P_OK) {
            j->failed_at = i;
            snprintf(j->error, sizeof j->error, "%s", pbs2p_last_error());
            return;
        }
}

/* The head of its own, output (*tied 0), or none: the head is the token embedding (*tied 1, *out untouched). */
static pbs2p_status read_head(const pbs2p_gguf *f, const config *c, row_matrix *out, int *tied) {
    const pbs2p_status st = read_embedding(f, "output", c->n_vocab, c->n_embd, out);
    *tied = st == PBS2P_ERR_NOT_FOUND;
    return *tied ? PBS2P_OK : st;
}

static pbs2p_status build_weights(const pbs2p_gguf *f, const config *c, pbs2p_pool *pool, weights *w) {
    pbs2p_status st;
    if ((st = read_embedding(f, "token_embd", c->n_vocab, c->n_embd, &w->token_embd)) != PBS2P_OK) return st;
    if ((st = read_head(f, c, &w->output, &w->tied)) != PBS2P_OK) return st;
    if (w->tied) w->output = w->token_embd;
    /* Llama always has a final norm; OPT only when pre-LN (Hugging Face's final_layer_norm may be None) */
    st = build_norm(f, c, "output_norm", c->arch == ARCH_LLAMA, &w->output_norm, &w->output_norm_bias);
    if (st != PBS2P_OK) return st;
    if (c->arch == ARCH_LLAMA && (st = llama_build_rope(f, c, &w->inv_freq, &w->inv_freq_swa)) != PBS2P_OK)
        return st;
    if (c->arch == ARCH_OPT && (st = opt_read_positions(f, c, &w->position_embd)) != PBS2P_OK) return st;
    w->blocks = calloc((size_t)c->n_layer, sizeof *w->blocks);
    if (!w->blocks) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %d blocks", c->n_layer);
    /* the blocks on the pool's threads: preparing the packed layers is most of a load (14.6 s of a Llama-3.2-1B
     * shape on one thread); job j builds blocks j, j + n, ... and stops at its first failure */
    const int nt = pbs2p_pool_threads(pool) < c->n_layer ? pbs2p_pool_threads(pool) : c->n_layer;
    block_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int j = 0; j < nt; j++) jobs[j] = (block_job){f, c, w, j, nt, c->n_layer, PBS2P_OK, ""};
    pbs2p_pool_run(pool, run_block_job, jobs, sizeof jobs[0], nt);
    const block_job *first = NULL; /* the failure of the lowest block, as a sequential load would report it */
    for (int j = 0; j < nt; j++)
        if (jobs[j].status != PBS2P_OK && (!first || jobs[j].failed_at < first->failed_at)) first = &jobs[j];
    if (first) return pbs2p_fail(first->status, "%s", first->error);
    /* each layer's window and RoPE table: Gemma's global layers see every position with the global base */
    for (int32_t l = 0; l < c->n_layer; l++) w->blocks[l].window = c->window;
    if (c->arch == ARCH_LLAMA && (st = llama_layer_windows(f, c, w->blocks)) != PBS2P_OK) return st;
    for (int32_t l = 0; l < c->n_layer; l++)
        w->blocks[l].inv_freq = w->blocks[l].window && w->inv_freq_swa ? w->inv_freq_swa : w->inv_freq;
    return PBS2P_OK;
}

static void free_cache(kv_cache *kv) {
    pbs2p_huge_free(kv->key, kv->key_bytes);
    pbs2p_huge_free(kv->value, kv->value_bytes);
    kv->key = kv->value = NULL;
}

/* Entries of the KV cache for n_ctx positions (model_internal.h): keys (float32: transposed, rows kv_key_stride(n_ctx)
 * apart) and values; float16: both in whole spans of tiles. */
static void kv_entries(const config *c, int32_t n_ctx, int f16, uint64_t *keys, uint64_t *values) {
    const uint64_t per_position = (uint64_t)c->n_layer * (uint64_t)c->n_head_kv * (uint64_t)c->head_dim;
    *keys = per_position * (f16 ? kv16_positions(n_ctx) : kv_key_stride(n_ctx));
    *values = per_position * (f16 ? kv16_positions(n_ctx) : (uint64_t)n_ctx);
}

static size_t kv_entry_bytes(int f16) { return f16 ? sizeof(uint16_t) : sizeof(float); }

/* The cache's sizes are within PBS2P_MODEL_MAX_STATE_BYTES: load() checks them first. */
static pbs2p_status build_cache(const config *c, int32_t n_ctx, int f16, kv_cache *kv) {
    uint64_t keys, values;
    kv_entries(c, n_ctx, f16, &keys, &values);
    kv->ldk = kv_key_stride(n_ctx);
    kv->f16 = f16;
    kv->key_bytes = (size_t)keys * kv_entry_bytes(f16);
    kv->value_bytes = (size_t)values * kv_entry_bytes(f16);
    kv->key = pbs2p_huge_alloc(kv->key_bytes); /* on huge pages: a step reads every KV head's rows, far apart */
    kv->value = pbs2p_huge_alloc(kv->value_bytes);
    if (!kv->key || !kv->value) {
        free_cache(kv);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a KV cache of %" PRIu64 " + %" PRIu64 " %s", keys,
                          values, f16 ? "halves" : "floats");
    }
    return PBS2P_OK;
}

/* general.architecture -> the forward that runs it; the names are pbs2p_edge/pack/architectures.py's GGUF names
 * (tests/runtime/test_model.py checks that the two lists are the same). */
static const struct { const char *name; arch_kind arch; } ARCHS[] = {
    {"llama", ARCH_LLAMA}, {"qwen2", ARCH_LLAMA}, {"gemma3", ARCH_LLAMA}, {"opt", ARCH_OPT}};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

static pbs2p_status read_arch(const pbs2p_gguf *f, config *c) {
    int present;
    pbs2p_status st;
    if ((st = key_str(f, "general.architecture", c->arch_name, sizeof c->arch_name, &present)) != PBS2P_OK) return st;
    if (!present) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key general.architecture");
    for (size_t i = 0; i < N_ARCHS; i++)
        if (strcmp(c->arch_name, ARCHS[i].name) == 0) {
            c->arch = ARCHS[i].arch;
            return PBS2P_OK;
        }
    char names[64] = "";
    for (size_t i = 0; i < N_ARCHS; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", ARCHS[i].name);
    return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "architecture '%s' is not supported by the model runtime (%s)",
                      c->arch_name, names);
}

/* Hyper-parameters (docs/GGUF.md §3), checked against each other; shapes are checked with the tensors. */
static pbs2p_status read_config(const pbs2p_gguf *f, config *c) {
    char k[7][64];
    pbs2p_status st;
    if ((st = read_arch(f, c)) != PBS2P_OK) return st;
    if ((st = key_int(f, arch_key(c, "embedding_length", k[0], 64), -1, 1, MAX_EMBD, &c->n_embd)) != PBS2P_OK ||
        (st = key_int(f, arch_key(c, "feed_forward_length", k[1], 64), -1, 1, MAX_FF, &c->n_ff)) != PBS2P_OK ||
        (st = key_int(f, arch_key(c, "block_count", k[2], 64), -1, 1, MAX_LAYER, &c->n_layer)) != PBS2P_OK ||
        (st = key_int(f, arch_key(c, "attention.head_count", k[3], 64), -1, 1, MAX_HEAD, &c->n_head)) != PBS2P_OK ||
        (st = key_int(f, arch_key(c, "attention.head_count_kv", k[4], 64), c->n_head, 1, MAX_HEAD, &c->n_head_kv)) !=
            PBS2P_OK ||
        (st = key_int(f, arch_key(c, "context_length", k[5], 64), -1, 1, MAX_CTX, &c->n_ctx_train)) != PBS2P_OK)
        return st;
    c->embd_scale = 1.0f;
    return c->arch == ARCH_LLAMA ? llama_read_config(f, c) : opt_read_config(f, c);
}

void pbs2p_model_free(pbs2p_model *m) {
    if (!m) return;
    pbs2p_pool_free(m->pool);
    free_cache(&m->kv);
    free_weights(&m->w, m->c.n_layer);
    pbs2p_tokenizer_free(m->tok);
    pbs2p_gguf_close(m->file);
    free(m);
}

/* Every count the file states two ways agrees with <arch>.block_count: no tensor of a block at or past it, and
 * pbs2p.linear.names lists each block's linears (6 or 7 a block) and no more, so a lowered block_count cannot run a
 * truncated model as a valid one. */
static pbs2p_status check_block_count(const pbs2p_gguf *f, const config *c, uint64_t n_linears) {
    pbs2p_gguf_info info;
    pbs2p_status st = pbs2p_gguf_get_info(f, &info);
    if (st != PBS2P_OK) return st;
    for (uint64_t i = 0; i < info.n_tensors; i++) {
        pbs2p_gguf_tensor t;
        if ((st = pbs2p_gguf_tensor_at(f, i, &t)) != PBS2P_OK) return st;
        long b;
        char *end;
        if (strncmp(t.name, "blk.", 4) != 0) continue;
        b = strtol(t.name + 4, &end, 10);
        if (end != t.name + 4 && *end == '.' && (b < 0 || b >= c->n_layer))
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s lies outside the %d blocks of %s.block_count", t.name,
                              c->n_layer, c->arch_name);
    }
    const uint64_t per_block = c->has_gate ? N_LIN : N_LIN - 1;
    if (n_linears != per_block * (uint64_t)c->n_layer)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p.linear.names has %" PRIu64 " entries; %d blocks of %" PRIu64
                          " linears make %" PRIu64, n_linears, c->n_layer, per_block, per_block * (uint64_t)c->n_layer);
    return PBS2P_OK;
}

/* pbs2p_model_load's checks before any weight is read: the file, its hyper-parameters, the vocabulary, the
 * parameters and the KV cache's size guard; sets m's file, config, n_ctx and n_threads. */
static pbs2p_status load_header(const char *path, const pbs2p_model_params *params, pbs2p_model *m) {
    pbs2p_status st;
    int32_t n_threads = params ? params->n_threads : 0, n_ctx = params ? params->n_ctx : 0;
    const int32_t kv_type = params ? params->kv_type : PBS2P_KV_F16;
    if (n_threads == 0) n_threads = 1;
    if (kv_type != PBS2P_KV_F16 && kv_type != PBS2P_KV_F32)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "kv_type %d must be PBS2P_KV_F16 (%d) or PBS2P_KV_F32 (%d)", kv_type,
                          PBS2P_KV_F16, PBS2P_KV_F32);
    if (n_threads < 1 || n_threads > PBS2P_MODEL_MAX_THREADS)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_threads %d must be in 1..%d (0 = 1)", n_threads,
                          PBS2P_MODEL_MAX_THREADS);
    if (n_ctx < 0) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_ctx %d must be >= 0 (0 = default)", n_ctx);
    if ((st = pbs2p_gguf_open(path, &m->file)) != PBS2P_OK) return st;
    const pbs2p_gguf *f = m->file;
    uint64_t n_linears;
    if ((st = pbs2p_gguf_check_linears(f, &n_linears)) != PBS2P_OK) return st; /* NOT_PBS2P for a stock GGUF */
    if ((st = read_config(f, &m->c)) != PBS2P_OK) return st;
    if ((st = check_block_count(f, &m->c, n_linears)) != PBS2P_OK) return st;

    /* n_vocab from the embedding's shape; <arch>.vocab_size, when present, must agree */
    row_matrix probe;
    char key[64];
    if ((st = read_embedding(f, "token_embd", 0, m->c.n_embd, &probe)) != PBS2P_OK)
        return st == PBS2P_ERR_NOT_FOUND ? pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks token_embd.weight") : st;
    if ((st = key_int(f, arch_key(&m->c, "vocab_size", key, sizeof key), probe.rows, 1, MAX_VOCAB, &m->c.n_vocab)) !=
        PBS2P_OK)
        return st;
    if (m->c.n_vocab != probe.rows)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "%s %d disagrees with token_embd.weight's %d rows", key, m->c.n_vocab,
                          probe.rows);

    if (n_ctx == 0) n_ctx = m->c.n_ctx_train < PBS2P_MODEL_DEFAULT_CTX ? m->c.n_ctx_train : PBS2P_MODEL_DEFAULT_CTX;
    if (n_ctx > m->c.n_ctx_train)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_ctx %d exceeds the model's context_length %d", n_ctx,
                          m->c.n_ctx_train);
    /* resource guard before the large allocations: KV cache + scratch of a full-context eval */
    const config *c = &m->c;
    uint64_t kv_keys, kv_values;
    kv_entries(c, n_ctx, kv_type == PBS2P_KV_F16, &kv_keys, &kv_values);
    const uint64_t kv_bytes = (kv_keys + kv_values) * kv_entry_bytes(kv_type == PBS2P_KV_F16);
    uint64_t run_bytes = (uint64_t)run_floats(c, (size_t)chunk_tokens(n_ctx), n_ctx, n_threads) * 4;
    if (kv_bytes + run_bytes > PBS2P_MODEL_MAX_STATE_BYTES)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_ctx %d needs %" PRIu64 " MiB of KV cache and scratch, above the "
                          "limit of %" PRIu64 " MiB; lower n_ctx", n_ctx, (kv_bytes + run_bytes) >> 20,
                          PBS2P_MODEL_MAX_STATE_BYTES >> 20);
    m->n_ctx = n_ctx;
    m->n_threads = n_threads;
    m->kv.f16 = kv_type == PBS2P_KV_F16; /* the cache itself is build_cache's */
    return PBS2P_OK;
}

static pbs2p_status load(const char *path, const pbs2p_model_params *params, pbs2p_model *m) {
    pbs2p_status st;
    if ((st = load_header(path, params, m)) != PBS2P_OK) return st;
    const pbs2p_gguf *f = m->file;
    const config *c = &m->c;
    const int32_t n_threads = m->n_threads, n_ctx = m->n_ctx;
    if (n_threads > 1 && (st = pbs2p_pool_new(n_threads, &m->pool)) != PBS2P_OK) return st;
    if ((st = build_weights(f, c, m->pool, &m->w)) != PBS2P_OK) return st;
    if ((st = build_cache(c, n_ctx, m->kv.f16, &m->kv)) != PBS2P_OK) return st;
    /* A file without a tokenizer, or with one of a kind this library cannot read, still runs from token ids;
     * a tokenizer that is present but malformed makes the file invalid. */
    st = pbs2p_tokenizer_load(f, &m->tok);
    if (st == PBS2P_ERR_NOT_FOUND || st == PBS2P_ERR_UNSUPPORTED) {
        m->tok_status = st;
        snprintf(m->tok_error, sizeof m->tok_error, "%s", pbs2p_last_error());
        return PBS2P_OK;
    }
    return st;
}

pbs2p_status pbs2p_model_peek(const char *path, const pbs2p_model_params *params, pbs2p_model_info *out) {
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "out is NULL");
    if (!path) return pbs2p_fail(PBS2P_ERR_NULL, "path is NULL");
    pbs2p_model *m = calloc(1, sizeof *m);
    if (!m) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the model");
    pbs2p_status st = load_header(path, params, m);
    if (st == PBS2P_OK) st = read_head(m->file, &m->c, &m->w.output, &m->w.tied);
    if (st == PBS2P_OK) st = pbs2p_model_get_info(m, out);
    pbs2p_model_free(m);
    return st;
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
