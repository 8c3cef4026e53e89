/* model.c — the decoder forward with a KV cache (Llama and OPT: one code path, steered by config) and the API. */
#include "model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------------------------------------------
 * Scratch of one eval */

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

/* ----------------------------------------------------------------------------------------------------
 * The forward pass */

/* rows (T, D) = norm of x (T, D), in place when rows == x. */
static void norm_rows(const config *c, float *rows, const float *x, int32_t T, const float *weight, const float *bias) {
    const int32_t D = c->n_embd;
    for (int32_t t = 0; t < T; t++)
        norm_row(rows + (size_t)t * D, x + (size_t)t * D, weight, bias, D, c->norm, c->eps);
}

/* s->xb (T, D) = o(attention(q, k, v of `in`)): positions (RoPE or q scaling), new keys / values into the cache. */
static pbs2p_status self_attention(pbs2p_model *m, run_state *s, const block *b, int32_t l, const float *in, int32_t T,
                                   int32_t n_past) {
    const config *c = &m->c;
    const size_t QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    pbs2p_pool *pool = m->pool;
    pbs2p_status st;
    if ((st = matmul(&b->lin[LIN_Q], in, T, s->q, pool)) != PBS2P_OK ||
        (st = matmul(&b->lin[LIN_K], in, T, s->k, pool)) != PBS2P_OK ||
        (st = matmul(&b->lin[LIN_V], in, T, s->v, pool)) != PBS2P_OK)
        return st;
    if (c->q_scale != 1.0f)
        for (size_t i = 0; i < (size_t)T * QD; i++) s->q[i] *= c->q_scale;
    if (b->q_norm) /* Gemma: RMSNorm of every query and key head, before RoPE */
        for (size_t h = 0; h < (size_t)T * (size_t)c->n_head; h++) {
            float *q = s->q + h * (size_t)c->head_dim;
            norm_row(q, q, b->q_norm, NULL, c->head_dim, NORM_RMS, c->eps);
        }
    if (b->k_norm)
        for (size_t h = 0; h < (size_t)T * (size_t)c->n_head_kv; h++) {
            float *k = s->k + h * (size_t)c->head_dim;
            norm_row(k, k, b->k_norm, NULL, c->head_dim, NORM_RMS, c->eps);
        }
    for (int32_t t = 0; t < T; t++) {
        const size_t cache_row = ((size_t)l * m->n_ctx + (size_t)(n_past + t)) * KVD;
        if (b->inv_freq) {
            rope(s->q + (size_t)t * QD, c->n_head, c->head_dim, n_past + t, b->inv_freq);
            rope(s->k + (size_t)t * KVD, c->n_head_kv, c->head_dim, n_past + t, b->inv_freq);
        }
        const size_t key_at = (size_t)l * KVD * m->kv.ldk + (size_t)(n_past + t); /* transposed */
        const float *k_new = s->k + (size_t)t * KVD, *v_new = s->v + (size_t)t * KVD;
        if (m->kv.f16) {
            uint16_t *key = (uint16_t *)m->kv.key + key_at, *value = (uint16_t *)m->kv.value + cache_row;
            for (size_t i = 0; i < KVD; i++) key[i * m->kv.ldk] = pbs2p_float_to_half(k_new[i]);
            for (size_t i = 0; i < KVD; i++) value[i] = pbs2p_float_to_half(v_new[i]);
        } else {
            float *key = (float *)m->kv.key + key_at;
            for (size_t i = 0; i < KVD; i++) key[i * m->kv.ldk] = k_new[i];
            memcpy((float *)m->kv.value + cache_row, v_new, KVD * sizeof(float));
        }
    }
    if ((st = attention(m, s, l, T, n_past)) != PBS2P_OK) return st;
    return matmul(&b->lin[LIN_O], s->att_out, T, s->xb, pool);
}

/* s->xb (T, D) = down(act(gate(in)) * up(in)), or down(act(up(in))) without a gate (OPT: fc2(act(fc1(in)))). */
static pbs2p_status mlp(pbs2p_model *m, run_state *s, const block *b, const float *in, int32_t T) {
    pbs2p_pool *pool = m->pool;
    const size_t n = (size_t)T * (size_t)m->c.n_ff;
    pbs2p_status st;
    if (m->c.has_gate) {
        if ((st = matmul(&b->lin[LIN_GATE], in, T, s->hb, pool)) != PBS2P_OK ||
            (st = matmul(&b->lin[LIN_UP], in, T, s->hb2, pool)) != PBS2P_OK)
            return st;
        activate(s->hb, s->hb2, n, m->c.act);
    } else {
        if ((st = matmul(&b->lin[LIN_UP], in, T, s->hb, pool)) != PBS2P_OK) return st;
        activate(s->hb, NULL, n, m->c.act);
    }
    return matmul(&b->lin[LIN_DOWN], s->hb, T, s->xb, pool);
}

/* One decoder block over the T tokens of s->x (updated in place).
 * pre-LN (Llama, most OPT):  x += attn(norm1(x)); x += mlp(norm2(x))
 * post-LN (OPT-350m):        x = norm1(x + attn(x)); x = norm2(x + mlp(x))
 * Gemma 3 (sandwich):        x += post1(attn(norm1(x))); x += post2(mlp(norm2(x))) */
static pbs2p_status forward_block(pbs2p_model *m, run_state *s, int32_t l, int32_t T, int32_t n_past) {
    const config *c = &m->c;
    const block *b = &m->w.blocks[l];
    const size_t TD = (size_t)T * (size_t)c->n_embd;
    pbs2p_status st;

    if (c->norm_before) norm_rows(c, s->xb, s->x, T, b->attn_norm, b->attn_norm_bias);
    /* self_attention overwrites s->xb only after its q, k, v projections have read it */
    if ((st = self_attention(m, s, b, l, c->norm_before ? s->xb : s->x, T, n_past)) != PBS2P_OK) return st;
    if (b->attn_post_norm) norm_rows(c, s->xb, s->xb, T, b->attn_post_norm, NULL);
    for (size_t i = 0; i < TD; i++) s->x[i] += s->xb[i];
    if (!c->norm_before) norm_rows(c, s->x, s->x, T, b->attn_norm, b->attn_norm_bias);

    if (c->norm_before) norm_rows(c, s->xb, s->x, T, b->ffn_norm, b->ffn_norm_bias);
    if ((st = mlp(m, s, b, c->norm_before ? s->xb : s->x, T)) != PBS2P_OK) return st;
    if (b->ffn_post_norm) norm_rows(c, s->xb, s->xb, T, b->ffn_post_norm, NULL);
    for (size_t i = 0; i < TD; i++) s->x[i] += s->xb[i];
    if (!c->norm_before) norm_rows(c, s->x, s->x, T, b->ffn_norm, b->ffn_norm_bias);
    return PBS2P_OK;
}

static pbs2p_status forward(pbs2p_model *m, run_state *s, const int32_t *tokens, int32_t T, int32_t n_past,
                            float *logits, int all_rows) {
    const config *c = &m->c;
    const int32_t D = c->n_embd;
    pbs2p_status st;
    /* x = token embedding [+ learned position embedding, row n_past + t + pos_offset, decoded into xb first] */
    for (int32_t t = 0; t < T; t++) {
        float *x = s->x + (size_t)t * D, *pos = s->xb + (size_t)t * D;
        pbs2p_dense_row(&m->w.token_embd, tokens[t], x);
        if (c->embd_scale != 1.0f)
            for (int32_t j = 0; j < D; j++) x[j] *= c->embd_scale;
        if (!m->w.position_embd.data) continue;
        pbs2p_dense_row(&m->w.position_embd, n_past + t + c->pos_offset, pos);
        for (int32_t j = 0; j < D; j++) x[j] += pos[j];
    }
    for (int32_t l = 0; l < c->n_layer; l++)
        if ((st = forward_block(m, s, l, T, n_past)) != PBS2P_OK) return st;
    /* final norm (when the model has one) of the rows the head needs, then the head */
    const int32_t first = all_rows ? 0 : T - 1;
    const float *rows = s->x + (size_t)first * D;
    if (m->w.output_norm) {
        norm_rows(c, s->xb, rows, T - first, m->w.output_norm, m->w.output_norm_bias);
        rows = s->xb;
    }
    return head(m, rows, T - first, logits);
}

/* PBS2P_ERR_NONFINITE when a logit of the rows (rows, V) is NaN or Inf: a file with non-finite weights, scales or
 * norms loads (checking every weight would read the whole file) but must not give a wrong answer as a success. */
static pbs2p_status check_finite(const float *logits, int32_t rows, int32_t V) {
    for (int32_t r = 0; r < rows; r++) {
        const float *row = logits + (size_t)r * (size_t)V;
        for (int32_t i = 0; i < V; i++)
            if (!isfinite(row[i]))
                return pbs2p_fail(PBS2P_ERR_NONFINITE, "logit %d of row %d is %s: the model file holds non-finite "
                                  "weights, scales or norms", i, r, isnan(row[i]) ? "NaN" : "infinite");
    }
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * The model API (loading and freeing: model_load.c) */

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
    if (st == PBS2P_OK) st = check_finite(logits, all_rows ? n_tokens : 1, V);
    m->n_cached = st == PBS2P_OK ? n_past + n_tokens : n_past;
    return st;
}

pbs2p_status pbs2p_model_get_info(const pbs2p_model *m, pbs2p_model_info *out) {
    if (!m || !out) return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", m ? "out" : "model");
    memset(out, 0, sizeof *out);
    snprintf(out->arch, sizeof out->arch, "%s", m->c.arch_name);
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
    out->kv_type = m->kv.f16 ? PBS2P_KV_F16 : PBS2P_KV_F32;
    return PBS2P_OK;
}

pbs2p_status pbs2p_model_tokenizer(const pbs2p_model *m, const pbs2p_tokenizer **out) {
    if (!m || !out) return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", m ? "out" : "model");
    *out = m->tok;
    if (!m->tok) return pbs2p_fail(m->tok_status, "the model has no usable tokenizer: %s", m->tok_error);
    return PBS2P_OK;
}

pbs2p_status pbs2p_model_reset(pbs2p_model *m) {
    if (!m) return pbs2p_fail(PBS2P_ERR_NULL, "model is NULL");
    m->n_cached = 0;
    return PBS2P_OK;
}
