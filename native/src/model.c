/* model.c — the model API: eval (its arguments checked, the forward of model_forward.c run, its logits checked
 * finite), the model's info, its tokenizer and resetting its cache; loading and freeing are model_load.c. */
#include "model_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
    pbs2p_status st = model_forward(m, tokens, n_tokens, n_past, logits, all_rows);
    if (st == PBS2P_OK) st = check_finite(logits, all_rows ? n_tokens : 1, V);
    m->n_cached = st == PBS2P_OK ? n_past + n_tokens : n_past;
    return st;
}

/* pbs2p_model_info.step_bytes: what one decode step reads of the weights as held (pbs2p.h); 0 before the blocks are
 * loaded (pbs2p_model_peek). */
static uint64_t step_bytes(const pbs2p_model *m) {
    const weights *w = &m->w;
    if (!w->blocks) return 0;
    const uint64_t D = (uint64_t)m->c.n_embd, F = sizeof(float);
    uint64_t n = (uint64_t)w->output.rows * w->output.row_bytes + w->token_embd.row_bytes +
                 (w->position_embd.data ? w->position_embd.row_bytes : 0) +
                 ((w->output_norm ? D : 0) + (w->output_norm_bias ? D : 0)) * F;
    for (int32_t l = 0; l < m->c.n_layer; l++) {
        const block *b = &w->blocks[l];
        const float *norms[] = {b->attn_norm, b->attn_norm_bias, b->ffn_norm, b->ffn_norm_bias, b->attn_post_norm,
                                b->ffn_post_norm};
        for (size_t k = 0; k < sizeof norms / sizeof norms[0]; k++) n += norms[k] ? D * F : 0;
        n += ((b->q_norm ? 1u : 0u) + (b->k_norm ? 1u : 0u)) * (uint64_t)m->c.head_dim * F;
        for (int k = 0; k < N_LIN; k++) {
            const linear *lin = &b->lin[k];
            n += linear_bytes(lin);
            n += lin->bias ? (uint64_t)lin->rows * F : 0;
        }
    }
    return n;
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
    out->step_bytes = step_bytes(m);
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
