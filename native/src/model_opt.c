/* model_opt.c — the model runtime's OPT-specific part: its keys (LayerNorm, activation, pre/post-LN), positions. */
#include "model_internal.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

/* opt.activation -> act_kind, as Hugging Face's ACT2FN names them; -1 for others. */
static int activation_of(const char *name) {
    static const struct { const char *name; act_kind act; } known[] = {
        {"relu", ACT_RELU}, {"gelu", ACT_GELU}, {"gelu_new", ACT_GELU_TANH}, {"gelu_pytorch_tanh", ACT_GELU_TANH}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0) return (int)known[i].act;
    return -1;
}

/* docs/GGUF.md §3 opt, after the keys every architecture shares (model_load.c). */
pbs2p_status opt_read_config(const pbs2p_gguf *f, config *c) {
    char act[32];
    int present, before;
    pbs2p_status st;
    /* token_embd (V, word_embed_proj_dim) narrower or wider than the hidden size needs project_in / project_out,
     * which the runtime does not have (nor does the exporter write them) */
    pbs2p_gguf_tensor t;
    if (pbs2p_gguf_find_tensor(f, "token_embd.weight", &t) == PBS2P_OK && t.n_dims == 2 &&
        t.ne[0] != (uint64_t)c->n_embd)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "OPT with word_embed_proj_dim %" PRIu64 " != embedding_length %d "
                          "(token_embd.weight's width; project_in / project_out) is not supported", t.ne[0], c->n_embd);

    if (c->n_embd % c->n_head)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "opt.attention.head_count %d does not divide embedding_length %d",
                          c->n_head, c->n_embd);
    if (c->n_head_kv != c->n_head)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "opt.attention.head_count_kv %d must equal head_count %d", c->n_head_kv,
                          c->n_head);
    c->head_dim = c->n_embd / c->n_head;
    if ((st = key_pos_float(f, "opt.attention.layer_norm_epsilon", 0, &c->eps)) != PBS2P_OK ||
        (st = key_int(f, "opt.position_offset", -1, 0, MAX_CTX, &c->pos_offset)) != PBS2P_OK ||
        (st = key_str(f, "opt.activation", act, sizeof act, &present)) != PBS2P_OK)
        return st;
    if (!present) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key opt.activation");
    int a = activation_of(act);
    if (a < 0)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "opt.activation '%s' is not supported (relu, gelu, gelu_new, "
                          "gelu_pytorch_tanh)", act);
    st = pbs2p_gguf_get_bool(f, "opt.layer_norm_before", &before);
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key opt.layer_norm_before");
    if (st != PBS2P_OK) return pbs2p_fail(st, "key opt.layer_norm_before: %s", pbs2p_last_error());
    c->norm = NORM_LAYER;
    c->norm_before = before != 0;
    c->act = (act_kind)a;
    c->has_gate = 0;
    c->q_scale = (float)pow((double)c->head_dim, -0.5); /* OPTAttention scales q after q_proj (bias included) */
    c->score_scale = 1.0f;
    return PBS2P_OK;
}

/* position_embd.weight (rows, D): every position 0..context_length-1 must have its row p + position_offset. */
pbs2p_status opt_read_positions(const pbs2p_gguf *f, const config *c, row_matrix *out) {
    pbs2p_status st = read_rows(f, "position_embd.weight", 0, c->n_embd, out);
    if (st == PBS2P_ERR_NOT_FOUND)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the tensor position_embd.weight");
    if (st != PBS2P_OK) return st;
    const int64_t need = (int64_t)c->n_ctx_train + c->pos_offset;
    if (out->rows < need)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "position_embd.weight has %d rows; context_length %d at position_offset "
                          "%d needs %" PRId64, out->rows, c->n_ctx_train, c->pos_offset, need);
    return PBS2P_OK;
}
